"""An Anthropic backend's answers as canonical chat completions (for every front end but its own).

Text blocks are ``content``, thinking blocks ``reasoning_content`` (signatures stay behind: no
other protocol can carry them), ``tool_use`` blocks tool calls whose arguments stream as they
arrive; ``stop_reason`` becomes ``finish_reason`` and usage counts cached tokens as prompt tokens.
An ``event: error`` in the stream, and Anthropic error bodies, become errors with the status the
error type stands for (``overloaded_error`` is 529), so failover treats them like any backend's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson

from hookproxy import UpstreamError, UpstreamStream, UpstreamUnreachable
from hookproxy.upstream_errors import error_from_parts, openai_error

from .protocol import FINISH_REASONS, STATUS_OF_TYPE, loads, openai_usage


def anthropic_error(backend_id: str, status: int, headers: Mapping[str, str], raw: bytes) -> UpstreamError:
    """An Anthropic error answer (``{"type": "error", "error": {"type", "message"}}``); other
    shapes (an Anthropic-compatible server may answer OpenAI-style) go to the default reader."""
    parsed = loads(raw)
    detail = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(detail, dict) and isinstance(detail.get("message"), str):
        upstream = {"message": detail["message"], "type": detail.get("type") or "api_error", "param": None,
                    "code": None}
        return error_from_parts(backend_id, status, headers, raw, upstream_body=upstream, message=detail["message"])
    return openai_error(backend_id, status, headers, raw)


def chat_completion(body: bytes) -> bytes:
    data = loads(body)
    if not isinstance(data, dict) or not isinstance(data.get("content"), list):
        raise UpstreamUnreachable(f"the Anthropic backend answered with an unexpected body: {body[:200]!r}")
    texts, reasoning, calls = [], [], []
    for block in data["content"]:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "thinking":
            reasoning.append(block.get("thinking") or "")
        elif kind == "tool_use":
            calls.append({"id": block.get("id", ""), "type": "function",
                          "function": {"name": block.get("name", ""),
                                       "arguments": orjson.dumps(block.get("input") or {}).decode()}})
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = calls
    finish = FINISH_REASONS.get(data.get("stop_reason") or "", "stop")
    completion = {"id": data.get("id", ""), "object": "chat.completion", "created": 0, "model": data.get("model", ""),
                  "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                  "usage": openai_usage(data.get("usage"))}
    return orjson.dumps(completion)


def _chunk(state: dict[str, Any], delta: dict[str, Any], finish: str | None = None) -> bytes:
    data = {"id": state["id"], "object": "chat.completion.chunk", "created": 0, "model": state["model"],
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + orjson.dumps(data) + b"\n\n"


async def chat_chunks(stream: UpstreamStream) -> AsyncIterator[bytes]:
    """Anthropic events as ``chat.completion.chunk`` events, then ``[DONE]``."""
    state: dict[str, Any] = {"id": "", "model": "", "usage": {}, "tools": {}}
    async for item in stream.events():
        if item.data is None:
            continue
        payload = loads(item.data)
        if not isinstance(payload, dict):
            raise UpstreamUnreachable(f"the Anthropic backend sent malformed stream data: {item.data[:200]!r}")
        out = _translate(payload.get("type") or item.event or "", payload, state)
        if out:
            yield out
        if state.get("stopped"):
            return
    raise UpstreamUnreachable("the Anthropic backend's stream ended before message_stop")


def _translate(kind: str, payload: dict[str, Any], state: dict[str, Any]) -> bytes:
    if kind == "message_start":
        message = payload.get("message") or {}
        state.update(id=message.get("id", ""), model=message.get("model", ""), usage=dict(message.get("usage") or {}))
        return _chunk(state, {"role": "assistant", "content": ""})
    if kind == "content_block_start":
        block = payload.get("content_block") or {}
        if block.get("type") == "tool_use":
            position = state["tools"].setdefault(payload.get("index"), len(state["tools"]))
            call = {"index": position, "id": block.get("id", ""), "type": "function",
                    "function": {"name": block.get("name", ""), "arguments": ""}}
            return _chunk(state, {"tool_calls": [call]})
        return b""
    if kind == "content_block_delta":
        return _delta(payload, state)
    if kind == "message_delta":
        state["usage"].update({k: v for k, v in (payload.get("usage") or {}).items() if v is not None})
        reason = (payload.get("delta") or {}).get("stop_reason") or ""
        return _chunk(state, {}, FINISH_REASONS.get(reason, "stop"))
    if kind == "message_stop":
        state["stopped"] = True
        usage = {"id": state["id"], "object": "chat.completion.chunk", "created": 0, "model": state["model"],
                 "choices": [], "usage": openai_usage(state["usage"])}
        return b"data: " + orjson.dumps(usage) + b"\n\n" + b"data: [DONE]\n\n"
    if kind == "error":
        detail = payload.get("error") or {}
        kind = detail.get("type", "api_error") if isinstance(detail, dict) else "api_error"
        message = detail.get("message") if isinstance(detail, dict) else str(detail)
        raise UpstreamError(f"the Anthropic backend's stream failed: {message}", status=STATUS_OF_TYPE.get(kind, 502))
    return b""  # ping, and event types added later


def _delta(payload: dict[str, Any], state: dict[str, Any]) -> bytes:
    delta = payload.get("delta") or {}
    kind = delta.get("type")
    if kind == "text_delta" and delta.get("text"):
        return _chunk(state, {"content": delta["text"]})
    if kind == "thinking_delta" and delta.get("thinking"):
        return _chunk(state, {"reasoning_content": delta["thinking"]})
    if kind == "input_json_delta" and delta.get("partial_json"):
        position = state["tools"].get(payload.get("index"))
        if position is not None:
            call = {"index": position, "function": {"arguments": delta["partial_json"]}}
            return _chunk(state, {"tool_calls": [call]})
    return b""
