"""The Responses ``response`` object, its usage, and its output items from a chat answer.

One :class:`ResponseState` lives in ``ClientRequest.state`` for each request: the response id,
the request fields a response echoes, the tool-name map, the event sequence counter, and the
conversation items the response store keeps.
"""

from __future__ import annotations

import functools
import itertools
import os
import time
from dataclasses import dataclass, field
from typing import Any

from hookproxy import ProxyError

from .tools import ToolMap, custom_input

#: ``ClientRequest.state`` key of this front end's per-request state.
STATE = "responses"
#: Chat ``finish_reason`` values that leave a response incomplete, with the Responses reason.
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}
_PHRASES_CONTEXT = ("context length", "context_length", "context window", "maximum context", "too many tokens",
                    "prompt is too long", "input is too long")


class _RandomHex:
    """Hex digits of bytes from ``os.urandom``, fetched 4 KiB at a time.

    Response ids name stored conversations (``previous_response_id``), so they must stay
    unguessable; but a ``getrandom`` system call per id was 6% of the front end's CPU per request
    in the bench profile. One call now serves about 340 ids, hex-encoded once for all of them.
    Each forked worker starts empty.
    """

    def __init__(self) -> None:
        self._digits = ""
        self._offset = 0
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self._digits = ""
        self._offset = 0

    def take(self, count: int) -> str:
        """``count`` random bytes as ``2 * count`` hex digits."""
        start = self._offset
        end = start + 2 * count
        if end > len(self._digits):
            self._digits = os.urandom(4096).hex()
            start, end = 0, 2 * count
        self._offset = end
        return self._digits[start:end]


_random = _RandomHex()


def new_id(prefix: str) -> str:
    return f"{prefix}_{_random.take(12)}"


@dataclass
class ResponseState:
    """What one request's answer needs to know about the request (see the module docstring)."""

    model: str
    names: ToolMap
    echo: dict[str, Any]
    #: Conversation items before this response's output (for the store); ``None``: do not store.
    history: list[dict[str, Any]] | None = None
    id: str = field(default_factory=functools.partial(new_id, "resp"))
    created_at: int = field(default_factory=lambda: int(time.time()))
    sequence: itertools.count[int] = field(default_factory=itertools.count)
    started: bool = False
    _items: itertools.count[int] = field(default_factory=itertools.count)

    def item_id(self, prefix: str) -> str:
        return f"{prefix}_{self.id[5:]}{next(self._items):03d}"

    def response(self, status: str, output: list[dict[str, Any]] | None = None,
                 usage: dict[str, Any] | None = None, *, incomplete: str | None = None,
                 error: dict[str, Any] | None = None) -> dict[str, Any]:
        """The ``response`` object in a given state."""
        return {
            "id": self.id, "object": "response", "created_at": self.created_at, "status": status,
            "background": False, "error": error,
            "incomplete_details": {"reason": incomplete} if incomplete else None,
            "model": self.model, "output": output or [], "usage": usage, **self.echo,
        }


#: The request fields ``echo_fields`` reads besides ``max_output_tokens``.
_ECHOED = frozenset(("instructions", "metadata", "parallel_tool_calls", "previous_response_id", "reasoning", "store",
                     "temperature", "text", "tool_choice", "tools", "top_p", "user"))


def echo_fields(body: dict[str, Any]) -> dict[str, Any]:
    """The request fields a response object repeats."""
    if _ECHOED.isdisjoint(body):
        return _default_echo(body.get("max_output_tokens"))
    reasoning = _dict(body.get("reasoning"))
    text = _dict(body.get("text"))
    return {
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "metadata": body.get("metadata") or {},
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "store": body.get("store", True),
        "temperature": body.get("temperature"),
        "text": {"format": {"type": "text"}, **text},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p"),
        "truncation": "disabled",
        "user": body.get("user"),
    }


def _default_echo(max_output_tokens: Any) -> dict[str, Any]:
    """``echo_fields`` of a body that has none of ``_ECHOED`` (most short requests): what each
    ``body.get`` above gives for a missing field, without the dozen lookups."""
    return {
        "instructions": None,
        "max_output_tokens": max_output_tokens,
        "metadata": {},
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": True,
        "temperature": None,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": None,
        "truncation": "disabled",
        "user": None,
    }


def usage_from_chat(usage: Any) -> dict[str, Any]:
    """Chat-completions usage as Responses usage, every field present (clients parse it strictly)."""
    usage = usage if isinstance(usage, dict) else {}
    prompt = _int(usage.get("prompt_tokens"))
    completion = _int(usage.get("completion_tokens"))
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    cached = _int(cached or usage.get("prompt_cache_hit_tokens"))
    details = usage.get("completion_tokens_details")
    reasoning = _int(details.get("reasoning_tokens")) if isinstance(details, dict) else 0
    total = _int(usage.get("total_tokens")) or prompt + completion
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": total}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int:
    """A token count: an integer, else 0 (``True`` is no count)."""
    if value.__class__ is int:  # what JSON counts are: one check instead of two isinstance calls
        return value
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def reasoning_item(item_id: str, text: str) -> dict[str, Any]:
    return {"id": item_id, "type": "reasoning", "summary": [{"type": "summary_text", "text": text}]}


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {"id": item_id, "type": "message", "role": "assistant", "status": status,
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}


def call_item(state: ResponseState, item_id: str, call_id: str, canonical_name: str, arguments: str) -> dict[str, Any]:
    """A finished ``function_call``, or ``custom_tool_call`` for a custom tool."""
    tool = state.names.client(canonical_name)
    item: dict[str, Any]
    if tool.custom:
        item = {"id": item_id, "type": "custom_tool_call", "status": "completed", "call_id": call_id,
                "name": tool.name, "input": custom_input(arguments)}
    else:
        item = {"id": item_id, "type": "function_call", "status": "completed", "call_id": call_id,
                "name": tool.name, "arguments": arguments}
    if tool.namespace:
        item["namespace"] = tool.namespace
    return item


def output_from_message(state: ResponseState, message: dict[str, Any]) -> list[dict[str, Any]]:
    """The output items for one chat ``message``: reasoning, text, then each tool call."""
    output: list[dict[str, Any]] = []
    reasoning = reasoning_text(message)
    if reasoning:
        output.append(reasoning_item(state.item_id("rs"), reasoning))
    content = message.get("content")
    if isinstance(content, str) and content:
        output.append(message_item(state.item_id("msg"), content))
    elif not content:
        refusal = message.get("refusal")
        if isinstance(refusal, str) and refusal:
            output.append(message_item(state.item_id("msg"), refusal))
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            continue
        arguments = function.get("arguments")
        call_id = call.get("id") or new_id("call")
        output.append(call_item(state, state.item_id("fc"), call_id, function["name"],
                                arguments if isinstance(arguments, str) else "{}"))
    return output


def reasoning_text(delta: dict[str, Any]) -> str:
    """Reasoning a chat message or delta carries (``reasoning_content``, or ``reasoning``)."""
    value = delta.get("reasoning_content")
    if not isinstance(value, str):
        value = delta.get("reasoning")
    return value if isinstance(value, str) else ""


def failure(error: ProxyError) -> dict[str, Any]:
    """The ``error`` of a failed response: the codes clients act on.

    ``rate_limit_exceeded`` carries "try again in Ns" (the Codex CLI waits that long),
    ``context_length_exceeded`` stops a client from retrying, ``server_error`` is retried.
    """
    upstream = getattr(error, "upstream_body", None)
    code = str(error.code or (upstream.get("code") if isinstance(upstream, dict) else "") or "")
    message = error.message
    if error.status == 429 or "rate_limit" in code:
        wait = error.headers.get("Retry-After") or str(max(1, round(getattr(error, "retry_after", None) or 1)))
        return {"code": "rate_limit_exceeded", "message": f"{message.rstrip('.')}. Please try again in {wait}s."}
    lowered = message.lower()
    if "context_length" in code or any(phrase in lowered for phrase in _PHRASES_CONTEXT):
        return {"code": "context_length_exceeded", "message": message}
    if 400 <= error.status < 500:
        return {"code": "invalid_prompt", "message": message}
    return {"code": "server_error", "message": message}
