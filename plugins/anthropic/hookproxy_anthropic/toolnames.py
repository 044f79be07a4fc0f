"""Tool names longer than OpenAI's 64 characters, shortened on the way out and restored on the way back.

Anthropic allows longer names than chat backends accept (Claude Code's MCP tools are named
``mcp__<server>__<tool>``), and an OpenAI-compatible backend rejects the whole request over one
of them. A long name goes upstream as its first 55 characters, ``_`` and 8 hex digits of its
SHA-256 (stable across turns, so the history matches); the answer's tool calls get the original
name back.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

MAX_NAME = 64
_KEEP = MAX_NAME - 9


def short_name(name: str) -> str:
    if len(name) <= MAX_NAME:
        return name
    return _hashed(name)


@functools.lru_cache(maxsize=4096)
def _hashed(name: str) -> str:
    """The short form of a long name, remembered: a client sends the same tools (and the calls
    of earlier turns) with every request, so each long name would be hashed many times over."""
    return f"{name[:_KEEP]}_{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def shorten(chat: dict[str, Any]) -> dict[str, str]:
    """Shorten long tool names in ``chat`` in place (tools, tool_choice, earlier calls); return
    short name -> original for the names it changed."""
    names: dict[str, str] = {}
    for tool in chat.get("tools") or ():
        _shorten(tool.get("function"), names)
    choice = chat.get("tool_choice")
    if isinstance(choice, dict):
        _shorten(choice.get("function"), names)
    for message in chat.get("messages") or ():
        calls = message.get("tool_calls")
        if calls:
            for call in calls:
                _shorten(call.get("function"), names)
    return names


def _shorten(function: Any, names: dict[str, str]) -> None:
    """Shorten one ``function`` object's name if it is too long, remembering the original."""
    if isinstance(function, dict):
        name = function.get("name")
        if isinstance(name, str) and len(name) > MAX_NAME:
            short = short_name(name)
            names[short] = name
            function["name"] = short
