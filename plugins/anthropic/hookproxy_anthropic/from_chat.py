"""A canonical (chat-completions) answer as an Anthropic message or event stream.

Rules: ``reasoning_content`` is a thinking block whose signature stays empty (a signature is
Anthropic's to give; a forged one is rejected when the turn is sent back); tool calls are
``tool_use`` blocks with parsed input, one block per call; a turn with tool calls stops with
``tool_use`` whatever the upstream's finish_reason said; ``stop`` is ``stop_sequence`` when the
upstream names the sequence it matched (vLLM ``stop_reason``, SGLang ``matched_stop``); usage's
``input_tokens`` excludes cached tokens. An answer with nothing in it is an error, never an empty
success.

The stream follows Anthropic's grammar exactly: one ``message_start``; per block
``content_block_start``, its deltas (``thinking_delta``, ``text_delta``, ``input_json_delta`` as
the arguments arrive), ``content_block_stop``; indexes 0, 1, 2 in order, never shared; then
``message_delta`` (stop reason, usage) and ``message_stop``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson

from hookproxy import UpstreamError, UpstreamStream, UpstreamUnreachable

from .protocol import STOP_REASONS, anthropic_usage, event


def _original(name: str, names: Mapping[str, str] | None) -> str:
    return names.get(name, name) if names else name


def message_id(upstream_id: Any) -> str:
    return f"msg_{upstream_id}" if isinstance(upstream_id, str) and upstream_id else f"msg_{uuid.uuid4().hex}"


def tool_input(arguments: Any) -> dict[str, Any]:
    """Tool-call arguments (a JSON string) as a ``tool_use`` input object; text that is not a JSON
    object is kept under ``_arguments`` rather than lost."""
    if isinstance(arguments, dict):
        return arguments
    if not arguments:
        return {}
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {"_arguments": arguments}
    return parsed if isinstance(parsed, dict) else {"_arguments": arguments}


def stop_reason(finish: Any, choice: dict[str, Any], stops: list[str], has_tools: bool) -> tuple[str, str | None]:
    if has_tools:
        return "tool_use", None
    if stops and finish == "stop":  # a matched sequence counts only if it is one of the client's
        matched = choice.get("stop_reason") or choice.get("matched_stop")
        if isinstance(matched, str) and matched in stops:
            return "stop_sequence", matched
    return STOP_REASONS.get(finish, "end_turn") if isinstance(finish, str) else "end_turn", None


def render_message(body: bytes, model: str, stops: list[str], names: Mapping[str, str] | None = None
                   ) -> dict[str, Any]:
    """A ``chat.completion`` as an Anthropic ``message``; ``names`` restores shortened tool names."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise UpstreamUnreachable(f"the backend answered with a body that is not JSON: {body[:200]!r}") from None
    return message_from_chat(data, model, stops, names)


def message_from_chat(data: Any, model: str, stops: list[str], names: Mapping[str, str] | None = None
                      ) -> dict[str, Any]:
    """:func:`render_message` of an answer already parsed (the core's ``Reply.data``)."""
    choices = data.get("choices") if isinstance(data, dict) else None
    if not choices or not isinstance(choices[0], dict):
        raise UpstreamUnreachable("the backend answered without a choice")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        message = {}
    content: list[dict[str, Any]] = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = message.get("content")
    if isinstance(text, list):
        text = "".join(part.get("text", "") for part in text if isinstance(part, dict))
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    calls = message.get("tool_calls")
    if calls:
        for call in calls:
            function = call.get("function") or {}
            content.append({"type": "tool_use", "id": call.get("id") or f"toolu_{uuid.uuid4().hex[:24]}",
                            "name": _original(function.get("name") or "", names),
                            "input": tool_input(function.get("arguments"))})
    finish = choice.get("finish_reason")
    if not content and finish != "length":
        raise UpstreamUnreachable("the backend answered with an empty message")
    # Every call became a tool_use block (a malformed one raised), so: tools iff calls.
    reason, sequence = stop_reason(finish, choice, stops, bool(calls))
    return {"id": message_id(data.get("id")), "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": reason, "stop_sequence": sequence,
            "usage": anthropic_usage(data.get("usage"))}


class StreamRenderer:
    """Turns canonical chunks into Anthropic events, one chunk at a time (see the module doc)."""

    def __init__(self, model: str, stops: list[str], names: Mapping[str, str] | None = None) -> None:
        self.model = model
        self.stops = stops
        self.names = names
        self.started = False
        self.index = -1
        self.kind: str | None = None  # "thinking", "text", or "tool:<n>" for the open block
        self.tools_seen: set[int] = set()
        self.finish: Any = None
        self.choice: dict[str, Any] = {}
        self.usage: Any = None
        self.done = False

    def start(self, chunk: dict[str, Any]) -> list[bytes]:
        if self.started:
            return []
        self.started = True
        message: dict[str, Any] = {"id": message_id(chunk.get("id")), "type": "message", "role": "assistant",
                                   "model": self.model, "content": [], "stop_reason": None, "stop_sequence": None,
                                   "usage": {"input_tokens": 0, "output_tokens": 0}}
        return [event("message_start", {"message": message})]

    def feed(self, chunk: dict[str, Any]) -> list[bytes]:
        if chunk.get("error"):
            detail = chunk["error"]
            text = detail.get("message") if isinstance(detail, dict) else detail
            raise UpstreamError(f"the backend's stream failed: {text}", status=502)
        out = self.start(chunk)
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                out += self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
                out.append(self._delta({"type": "thinking_delta", "thinking": reasoning}))
            if isinstance(delta.get("content"), str) and delta["content"]:
                out += self._open("text", {"type": "text", "text": ""})
                out.append(self._delta({"type": "text_delta", "text": delta["content"]}))
            for call in delta.get("tool_calls") or []:
                out += self._tool(call)
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
                self.choice = choice
        return out

    def _tool(self, call: dict[str, Any]) -> list[bytes]:
        position = call.get("index", 0)
        function = call.get("function") or {}
        out: list[bytes] = []
        kind = f"tool:{position}"
        if position not in self.tools_seen:
            self.tools_seen.add(position)
            block: dict[str, Any] = {"type": "tool_use", "id": call.get("id") or f"toolu_{uuid.uuid4().hex[:24]}",
                                     "name": _original(function.get("name") or "", self.names), "input": {}}
            out += self._open(kind, block)
        elif self.kind != kind:
            raise UpstreamError(f"the backend sent arguments for tool call {position} after a later block began; "
                                "the Anthropic stream cannot go back to a closed block", status=502)
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            out.append(self._delta({"type": "input_json_delta", "partial_json": arguments}))
        return out

    def _open(self, kind: str, block: dict[str, Any]) -> list[bytes]:
        if self.kind == kind:
            return []
        out = self._close()
        self.index += 1
        self.kind = kind
        out.append(event("content_block_start", {"index": self.index, "content_block": block}))
        return out

    def _close(self) -> list[bytes]:
        if self.kind is None:
            return []
        self.kind = None
        return [event("content_block_stop", {"index": self.index})]

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return event("content_block_delta", {"index": self.index, "delta": delta})

    def end(self) -> list[bytes]:
        """The closing events; raises when the upstream gave nothing, or stopped mid-answer."""
        if self.index < 0 and self.finish != "length":
            raise UpstreamUnreachable("the backend's stream ended without any content")
        if self.finish is None and not self.done:
            raise UpstreamUnreachable("the backend's stream ended before its finish_reason")
        out = self.start({}) + self._close()
        reason, sequence = stop_reason(self.finish, self.choice, self.stops, bool(self.tools_seen))
        usage = anthropic_usage(self.usage)
        out.append(event("message_delta", {"delta": {"stop_reason": reason, "stop_sequence": sequence},
                                           "usage": usage}))
        out.append(event("message_stop", {}))
        return out


async def render_events(chunks: AsyncIterator[bytes], model: str, stops: list[str],
                        names: Mapping[str, str] | None = None) -> AsyncIterator[bytes]:
    """Canonical chunk SSE bytes as Anthropic events (errors raise: the relay ends with one
    ``event: error``)."""
    renderer = StreamRenderer(model, stops, names)
    async for item in UpstreamStream(chunks).events():
        if item.data is None:
            continue  # upstream keep-alive comments
        if item.is_done:
            renderer.done = True
            break
        try:
            chunk = item.json()
        except ValueError:
            raise UpstreamUnreachable(f"the backend sent malformed stream data: {item.data[:200]!r}") from None
        if not isinstance(chunk, dict):
            continue
        out = renderer.feed(chunk)
        if out:
            yield b"".join(out)
    yield b"".join(renderer.end())
