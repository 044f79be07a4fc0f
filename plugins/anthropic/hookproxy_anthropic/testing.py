"""Test kit: a fake Anthropic Messages upstream, built on the core's :class:`FakeUpstream`.

:class:`FakeAnthropicUpstream` is scripted exactly like ``FakeUpstream`` (``queue``,
``handler``, recorded ``requests``); without a script, ``POST /v1/messages`` echoes the last user
text as an Anthropic message (or event stream, for ``stream: true``) and
``POST /v1/messages/count_tokens`` answers ``{"input_tokens": 42}``. The helpers build answers:
:func:`message` (a non-streamed body), :func:`stream` (events as an SSE answer),
:func:`text_events` and :func:`tool_events` (the events of a whole turn) and :func:`error`.
"""

from __future__ import annotations

from typing import Any

from hookproxy import encode_event
from hookproxy.testing import Canned, FakeUpstream, RecordedRequest

MESSAGES = "/v1/messages"
COUNT_TOKENS = "/v1/messages/count_tokens"
#: What the fake answers to count_tokens when nothing is queued.
FAKE_TOKEN_COUNT = 42


def message(text: str = "", *, model: str = "claude-fake", content: list[dict[str, Any]] | None = None,
            stop_reason: str = "end_turn", usage: dict[str, int] | None = None) -> dict[str, Any]:
    """A non-streamed Anthropic message body."""
    blocks = content if content is not None else [{"type": "text", "text": text}]
    return {"id": "msg_fake", "type": "message", "role": "assistant", "model": model, "content": blocks,
            "stop_reason": stop_reason, "stop_sequence": None,
            "usage": usage or {"input_tokens": 10, "output_tokens": 5}}


def stream(events: list[dict[str, Any]], *, delay: float = 0.0, **kwargs: Any) -> Canned:
    """An SSE answer of these events (each a dict with its ``type``), ``event:`` lines included."""
    return Canned(chunks=[encode_event(item, event=item["type"]) for item in events], delay=delay, done=False,
                  **kwargs)


def _start(model: str, input_tokens: int) -> dict[str, Any]:
    return {"type": "message_start", "message": {
        "id": "msg_fake", "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": input_tokens, "output_tokens": 1}}}


def _end(stop_reason: str, output_tokens: int) -> list[dict[str, Any]]:
    return [{"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None},
             "usage": {"output_tokens": output_tokens}},
            {"type": "message_stop"}]


def text_events(pieces: list[str], *, model: str = "claude-fake", thinking: list[str] | None = None,
                signature: str = "sig-fake", input_tokens: int = 10) -> list[dict[str, Any]]:
    """A whole turn: optional thinking block (signed), then a text block of ``pieces``."""
    events = [_start(model, input_tokens)]
    index = 0
    if thinking:
        events.append({"type": "content_block_start", "index": 0,
                       "content_block": {"type": "thinking", "thinking": "", "signature": ""}})
        events += [{"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": piece}}
                   for piece in thinking]
        events.append({"type": "content_block_delta", "index": 0,
                       "delta": {"type": "signature_delta", "signature": signature}})
        events.append({"type": "content_block_stop", "index": 0})
        index = 1
    events.append({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}})
    events += [{"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}}
               for piece in pieces]
    events.append({"type": "content_block_stop", "index": index})
    return events + _end("end_turn", len(pieces))


def tool_events(calls: list[tuple[str, str, list[str]]], *, model: str = "claude-fake") -> list[dict[str, Any]]:
    """A turn of tool calls: ``(id, name, argument fragments)`` each, one block per call."""
    events = [_start(model, 10)]
    for index, (call_id, name, fragments) in enumerate(calls):
        events.append({"type": "content_block_start", "index": index,
                       "content_block": {"type": "tool_use", "id": call_id, "name": name, "input": {}}})
        events += [{"type": "content_block_delta", "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": fragment}} for fragment in fragments]
        events.append({"type": "content_block_stop", "index": index})
    return events + _end("tool_use", 7)


def error(status: int, kind: str, text: str, headers: dict[str, str] | None = None) -> Canned:
    """An Anthropic error answer."""
    return Canned(status=status, json={"type": "error", "error": {"type": kind, "message": text}},
                  headers=headers or {})


def _last_user_text(body: Any) -> str:
    for item in reversed(body.get("messages") or [] if isinstance(body, dict) else []):
        if isinstance(item, dict) and item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, str):
                return content
            return " ".join(block.get("text", "") for block in content or []
                            if isinstance(block, dict) and block.get("type") == "text")
    return ""


class FakeAnthropicUpstream(FakeUpstream):
    """An Anthropic Messages server on 127.0.0.1; ``url`` is the base to put in ``api_url``."""

    def queue(self, *answers: Canned, path: str = MESSAGES) -> None:
        super().queue(*answers, path=path)

    def requests_to(self, path: str = MESSAGES) -> list[RecordedRequest]:
        return super().requests_to(path)

    @staticmethod
    def _echo(request: RecordedRequest) -> Canned:
        if request.path == COUNT_TOKENS:
            return Canned(json={"input_tokens": FAKE_TOKEN_COUNT})
        if request.path != MESSAGES:
            return error(404, "not_found_error", f"no route {request.path}")
        body = request.json if request.body else {}
        model = body.get("model", "claude-fake") if isinstance(body, dict) else "claude-fake"
        text = "echo: " + _last_user_text(body)
        if isinstance(body, dict) and body.get("stream"):
            words = text.split(" ")
            pieces = [word + (" " if index < len(words) - 1 else "") for index, word in enumerate(words)]
            return stream(text_events(pieces, model=model))
        return Canned(json=message(text, model=model))
