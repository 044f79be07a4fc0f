"""Tool names longer than OpenAI's 64 characters, shortened on the way out and restored on the way back.

Anthropic allows longer names than chat backends accept (Claude Code's MCP tools are named
``mcp__<server>__<tool>``), and an OpenAI-compatible backend rejects the whole request over one
of them. A long name goes upstream as its first 55 characters, ``_`` and 8 hex digits of its
SHA-256 (stable across turns, so the history matches); the answer's tool calls get the original
name back.
"""

from __future__ import annotations

import hashlib
from typing import Any

MAX_NAME = 64
_KEEP = MAX_NAME - 9


def short_name(name: str) -> str:
    if len(name) <= MAX_NAME:
        return name
    return f"{name[:_KEEP]}_{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def shorten(chat: dict[str, Any]) -> dict[str, str]:
    """Shorten long tool names in ``chat`` in place (tools, tool_choice, earlier calls); return
    short name -> original for the names it changed."""
    names: dict[str, str] = {}

    def fix(function: Any) -> None:
        if isinstance(function, dict) and isinstance(function.get("name"), str) and len(function["name"]) > MAX_NAME:
            short = short_name(function["name"])
            names[short] = function["name"]
            function["name"] = short

    for tool in chat.get("tools") or []:
        fix(tool.get("function"))
    choice = chat.get("tool_choice")
    if isinstance(choice, dict):
        fix(choice.get("function"))
    for message in chat.get("messages") or []:
        for call in message.get("tool_calls") or []:
            fix(call.get("function"))
    return names
