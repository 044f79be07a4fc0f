"""``POST /v1/messages/count_tokens``: exact from an Anthropic backend, else an estimate.

When the selector's first candidate is an ``anthropic`` backend, the request goes to its own
``count_tokens`` (with the upstream model), and its answer is exact. Otherwise, or when that
backend does not offer the endpoint (404/405/501), the proxy estimates: one token per four ASCII
characters, one per other character (CJK text runs close to a token per character), 1,600 per
image (Anthropic's cost of a full-size image) and four per message, over the system prompt, the
messages and the tool definitions. A tokenizer library would need the model's vocabulary, which
no OpenAI-compatible backend exposes; the estimate is meant for Claude Code's context meter, not
billing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from hookproxy import InvalidRequest, Proxy

IMAGE_TOKENS = 1600
MESSAGE_TOKENS = 4
#: Keys whose values are identifiers or markup, not text the model reads.
_SKIPPED_KEYS = frozenset({"type", "id", "tool_use_id", "cache_control", "signature", "media_type"})


async def count_tokens(proxy: Proxy, body: dict[str, Any], headers: Mapping[str, str]) -> dict[str, int]:
    from .connector import AnthropicBackend

    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("model: Field required (a non-empty string)", param="model")
    if not isinstance(body.get("messages"), list):
        raise InvalidRequest("messages: Field required (a list)", param="messages")
    candidates = proxy.candidates(proxy.settings.force_model or model)
    if candidates:
        backend, route = candidates[0]
        if isinstance(backend, AnthropicBackend) and backend.health().usable:
            exact = await backend.count_tokens(proxy, {**body, "model": route.model}, headers)
            if exact is not None:
                return {"input_tokens": exact}
    return {"input_tokens": estimate(body)}


def estimate(body: dict[str, Any]) -> int:
    """The documented estimate (see the module docstring)."""
    total = _count(body.get("system")) + _count(body.get("tools"))
    for message in body.get("messages") or []:
        total += MESSAGE_TOKENS + _count(message.get("content") if isinstance(message, dict) else message)
    return max(1, total)


def _count(value: Any) -> int:
    if isinstance(value, str):
        return _text_tokens(value)
    if isinstance(value, list):
        return sum(_count(item) for item in value)
    if not isinstance(value, dict):
        return 0
    if value.get("type") == "image":
        return IMAGE_TOKENS
    total = 0
    for key, item in value.items():
        if key in _SKIPPED_KEYS:
            continue
        if key in ("input", "input_schema"):
            total += _text_tokens(orjson.dumps(item).decode())
        else:
            total += _count(item)
    return total


def _text_tokens(text: str) -> int:
    ascii_chars = sum(1 for char in text if char < "\x80")
    return (ascii_chars + 3) // 4 + (len(text) - ascii_chars)
