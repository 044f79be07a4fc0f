"""Responses tools as chat-completions tools, and tool names both ways.

- ``function`` tools become chat function tools unchanged.
- ``custom`` tools (freeform input, e.g. Codex's ``apply_patch`` with a Lark grammar) become a
  function with one string parameter, ``input``; the grammar goes into its description so the
  model knows the format. Calls of them are turned back into ``custom_tool_call`` items with
  the raw string, which is what the client runs.
- ``namespace`` tools (functions grouped under a name) are flattened to ``<namespace>__<name>``
  and mapped back to ``name`` plus ``namespace`` on the way out.
- Hosted tools no chat backend can run (``web_search``, ``file_search``, ``tool_search``, ...)
  are dropped with a log line: a client that offers them still gets an answer.

Names a chat backend would reject (over 64 characters, or characters outside
``[A-Za-z0-9_-]``) are shortened or cleaned, with a hash suffix, and mapped back.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from hookproxy import InvalidRequest

log = logging.getLogger("hookproxy.responses")

#: The one parameter a custom tool's function form takes.
CUSTOM_INPUT = "input"
MAX_NAME = 64
_INVALID_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class ClientTool:
    """A tool as the client knows it."""

    name: str
    namespace: str | None = None
    custom: bool = False


class ToolMap:
    """Canonical (chat) tool names for one request, and the client's tool behind each."""

    def __init__(self) -> None:
        self._by_canonical: dict[str, ClientTool] = {}

    def canonical(self, name: str, namespace: str | None = None, *, custom: bool = False) -> str:
        """The chat name of a client tool, remembered so a call of it maps back."""
        canonical = _chat_name(f"{namespace}__{name}" if namespace else name)
        known = self._by_canonical.get(canonical)
        if known is None or custom:
            self._by_canonical[canonical] = ClientTool(name, namespace, custom or (known is not None and known.custom))
        return canonical

    def client(self, canonical: str) -> ClientTool:
        """The client's tool behind a chat name (an unknown name is a plain function of that name)."""
        return self._by_canonical.get(canonical) or ClientTool(canonical)


@functools.lru_cache(maxsize=4096)
def _chat_name(qualified: str) -> str:
    """A name a chat backend accepts for ``qualified``: itself if it is one, else cleaned and
    shortened with a hash suffix. Remembered: a client sends the same tools (and the calls of
    earlier turns) with every request."""
    canonical = _INVALID_NAME_CHARS.sub("_", qualified)
    if len(canonical) > MAX_NAME or canonical != qualified:
        digest = hashlib.sha1(qualified.encode()).hexdigest()[:8]
        canonical = canonical[: MAX_NAME - 9] + "_" + digest
    return canonical


def chat_tools(tools: Any, names: ToolMap) -> list[dict[str, Any]]:
    """The chat-completions ``tools`` for a Responses ``tools`` list."""
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise InvalidRequest("'tools' must be an array", param="tools")
    result: list[dict[str, Any]] = []
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            raise InvalidRequest(f"tools[{index}] must be an object with a string 'type'", param=f"tools.{index}")
        kind = tool["type"]
        if kind == "namespace":
            namespace = _name(tool, f"tools.{index}")
            inner = tool.get("tools")
            if not isinstance(inner, list):
                raise InvalidRequest(f"tools[{index}].tools must be an array", param=f"tools.{index}.tools")
            for position, member in enumerate(inner):
                converted = _one_tool(member, names, f"tools.{index}.tools.{position}", namespace)
                if converted is not None:
                    result.append(converted)
            continue
        converted = _one_tool(tool, names, f"tools.{index}", None)
        if converted is not None:
            result.append(converted)
    return result


def _one_tool(tool: Any, names: ToolMap, where: str, namespace: str | None) -> dict[str, Any] | None:
    if not isinstance(tool, dict):
        raise InvalidRequest(f"{where} must be an object", param=where)
    kind = tool.get("type")
    if kind == "function":
        name = names.canonical(_name(tool, where), namespace)
        function: dict[str, Any] = {"name": name, "parameters": tool.get("parameters") or _EMPTY_OBJECT}
        if tool.get("description"):
            function["description"] = tool["description"]
        if isinstance(tool.get("strict"), bool):
            function["strict"] = tool["strict"]
        return {"type": "function", "function": function}
    if kind == "custom":
        name = names.canonical(_name(tool, where), namespace, custom=True)
        return {"type": "function", "function": {
            "name": name, "description": tool.get("description") or f"The {name} tool.",
            "parameters": _custom_parameters(tool.get("format"))}}
    log.info("dropping the %r tool at %s: no chat-completions backend can run it", kind, where)
    return None


_EMPTY_OBJECT: dict[str, Any] = {"type": "object", "properties": {}}


def _name(tool: dict[str, Any], where: str) -> str:
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequest(f"{where}.name must be a non-empty string", param=f"{where}.name")
    return name


def _custom_parameters(format_: Any) -> dict[str, Any]:
    description = "The raw input for the tool, as plain text (not JSON)."
    if isinstance(format_, dict) and format_.get("type") == "grammar":
        description += (f" It must follow this {format_.get('syntax', '')} grammar exactly:\n"
                        f"{format_.get('definition', '')}")
    return {"type": "object", "properties": {CUSTOM_INPUT: {"type": "string", "description": description}},
            "required": [CUSTOM_INPUT], "additionalProperties": False}


def chat_tool_choice(choice: Any, names: ToolMap) -> Any:
    """A Responses ``tool_choice`` as chat completions spells it (``None``: leave it out)."""
    if choice is None or choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind in ("function", "custom") and isinstance(choice.get("name"), str):
            name = names.canonical(choice["name"], choice.get("namespace"), custom=kind == "custom")
            return {"type": "function", "function": {"name": name}}
        if kind == "allowed_tools":
            return "required" if choice.get("mode") == "required" else "auto"
        log.info("tool_choice %r names a tool no chat backend runs; using 'auto'", kind)
        return "auto"
    raise InvalidRequest("'tool_choice' must be 'auto', 'none', 'required' or an object", param="tool_choice")


def custom_arguments(text: str) -> str:
    """A custom tool call's raw input as the arguments of its function form."""
    return json.dumps({CUSTOM_INPUT: text}, ensure_ascii=False)


def custom_input(arguments: str) -> str:
    """The raw input of a custom tool from its function form's arguments.

    A model that ignored the wrapper and wrote the input itself (or a single other key) is
    taken at its word.
    """
    try:
        parsed = json.loads(arguments, strict=False)
    except ValueError:
        return arguments
    if isinstance(parsed, dict):
        value = parsed.get(CUSTOM_INPUT)
        if isinstance(value, str):
            return value
        strings = [item for item in parsed.values() if isinstance(item, str)]
        if len(parsed) == 1 and strings:
            return strings[0]
    return arguments
