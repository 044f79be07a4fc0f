"""An Anthropic Messages request as the canonical chat-completions body.

The rules, each one a bug some translator has shipped:

* ``system`` (a string or text blocks) and ``role: "system"`` entries inside ``messages`` (Claude
  Code sends them for model names it does not know) become system messages, in place.
* A user turn's ``tool_result`` blocks become one ``tool`` message each, in their order, right
  after the assistant message with the calls; the rest of the turn follows as a user message.
  ``is_error: true`` stays visible to the model (the content starts with ``Error:``).
* Empty text blocks never reach the upstream; ``cache_control`` is dropped.
* ``thinking`` blocks of earlier assistant turns go back as ``reasoning_content`` (DeepSeek wants
  them echoed); their signatures only mean something to Anthropic and are dropped.
* A block type with no chat equivalent (``document``, server tools) is a 400 naming the block,
  never silently lost.
* ``tool_choice: any`` is ``required``; ``stop_sequences`` is ``stop``; ``thinking`` is
  ``reasoning_effort``; ``metadata.user_id`` is ``user``.
"""

from __future__ import annotations

from typing import Any

import orjson

from hookproxy import InvalidRequest

#: Fields copied as they are (same name, same meaning in both protocols).
_SAME = ("max_tokens", "temperature", "top_p", "top_k")
#: ``thinking.budget_tokens`` thresholds for reasoning_effort (below 4k low, below 16k medium).
_BUDGET_EFFORT = ((4000, "low"), (16000, "medium"))
_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "max": "high"}


def to_chat(body: dict[str, Any], *, stream: bool) -> dict[str, Any]:
    """The canonical body for ``body`` (already checked for ``model`` and ``messages``)."""
    messages = _system(body.get("system"))
    for index, message in enumerate(body["messages"]):
        messages.extend(_message(message, f"messages.{index}"))
    chat: dict[str, Any] = {"model": body["model"], "messages": messages}
    for key in _SAME:
        if body.get(key) is not None:
            chat[key] = body[key]
    if body.get("stop_sequences"):
        chat["stop"] = list(body["stop_sequences"])
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise InvalidRequest("tools must be a list of tool definitions", param="tools")
    if tools:
        chat["tools"] = [_tool(tool, f"tools.{index}") for index, tool in enumerate(tools)]
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        _tool_choice(choice, chat)
    effort = _effort(body.get("thinking"), body.get("output_config"))
    if effort:
        chat["reasoning_effort"] = effort
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str) and metadata["user_id"]:
        chat["user"] = metadata["user_id"]
    chat["stream"] = stream
    if stream:
        chat["stream_options"] = {"include_usage": True}
    return chat


def _system(system: Any) -> list[dict[str, Any]]:
    if system is None:
        return []
    text = _text_of(system, "system")
    return [{"role": "system", "content": text}] if text else []


def _text_of(content: Any, where: str) -> str:
    """A string, or text blocks joined by blank lines (empty ones skipped)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequest(f"{where} must be a string or a list of text blocks", param=where)
    texts = []
    for index, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind != "text":
            raise _unsupported(block, f"{where}.{index}", "only text blocks are allowed here")
        if block.get("text"):
            texts.append(str(block["text"]))
    return "\n\n".join(texts)


def _message(message: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(message, dict):
        raise InvalidRequest(f"{where} must be an object with 'role' and 'content'", param=where)
    role = message.get("role")
    content = message.get("content")
    if role == "system":
        text = _text_of(content, f"{where}.content")
        return [{"role": "system", "content": text}] if text else []
    if role == "user":
        return _user(content, where)
    if role == "assistant":
        return _assistant(content, where)
    raise InvalidRequest(f"{where}.role must be 'user', 'assistant' or 'system', not {role!r}", param=f"{where}.role")


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise InvalidRequest(f"{where}.content must be a string or a list of blocks", param=f"{where}.content")
    for index, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise InvalidRequest(f"{where}.content.{index} must be a block with a 'type'",
                                 param=f"{where}.content.{index}")
    return content


def _user(content: Any, where: str) -> list[dict[str, Any]]:
    """Tool results first (one tool message each, in order), then the user's own parts."""
    tools: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for index, block in enumerate(_blocks(content, where)):
        at = f"{where}.content.{index}"
        kind = block["type"]
        if kind == "text":
            if block.get("text"):
                parts.append({"type": "text", "text": str(block["text"])})
        elif kind == "image":
            parts.append(_image(block, at))
        elif kind == "tool_result":
            message, images = _tool_result(block, at)
            tools.append(message)
            parts.extend(images)
        else:
            raise _unsupported(block, at)
    messages = tools
    if parts:
        messages.append({"role": "user", "content": _simplest(parts)})
    return messages


def _simplest(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Text-only content as one string: some OpenAI-compatible servers take nothing else."""
    if all(part["type"] == "text" for part in parts):
        return "\n\n".join(part["text"] for part in parts)
    return parts


def _image(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source")
    if isinstance(source, dict) and source.get("type") == "base64":
        url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    elif isinstance(source, dict) and source.get("type") == "url" and isinstance(source.get("url"), str):
        url = source["url"]
    else:
        kind = source.get("type") if isinstance(source, dict) else None
        raise InvalidRequest(f"{where}: image source type {kind!r} cannot be translated for this backend "
                             "(use 'base64' or 'url')", param=where)
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_result(block: dict[str, Any], where: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One tool message; images in the result go to the user message after the tool messages
    (chat tool messages carry text only)."""
    content = block.get("content", "")
    images: list[dict[str, Any]] = []
    if isinstance(content, list):
        texts = []
        for index, part in enumerate(content):
            at = f"{where}.content.{index}"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                if part.get("text"):
                    texts.append(str(part["text"]))
            elif kind == "image":
                assert isinstance(part, dict)
                images.append(_image(part, at))
            else:
                raise _unsupported(part, at)
        text = "\n\n".join(texts)
    elif isinstance(content, str):
        text = content
    else:
        raise InvalidRequest(f"{where}.content must be a string or a list of blocks", param=f"{where}.content")
    if block.get("is_error") is True:
        text = f"Error: {text}" if text else "Error"
    if images:
        images.insert(0, {"type": "text", "text": f"(images returned by tool call {block.get('tool_use_id')})"})
    return {"role": "tool", "tool_call_id": str(block.get("tool_use_id", "")), "content": text}, images


def _assistant(content: Any, where: str) -> list[dict[str, Any]]:
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for index, block in enumerate(_blocks(content, where)):
        kind = block["type"]
        if kind == "text":
            if block.get("text"):
                texts.append(str(block["text"]))
        elif kind == "thinking":
            if block.get("thinking"):
                reasoning.append(str(block["thinking"]))
        elif kind == "redacted_thinking":
            continue  # encrypted for Anthropic only: no other backend can read it
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") if block.get("input") is not None else {}).decode()
            calls.append({"id": str(block.get("id", "")), "type": "function",
                          "function": {"name": str(block.get("name", "")), "arguments": arguments}})
        else:
            raise _unsupported(block, f"{where}.content.{index}")
    if not texts and not calls and not reasoning:
        return []
    message: dict[str, Any] = {"role": "assistant", "content": "\n\n".join(texts) if texts else None}
    if reasoning:
        message["reasoning_content"] = "\n\n".join(reasoning)
    if calls:
        message["tool_calls"] = calls
    return [message]


def _tool(tool: Any, where: str) -> dict[str, Any]:
    if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
        raise InvalidRequest(f"{where} must be a tool with a 'name'", param=where)
    if tool.get("type") not in (None, "custom"):
        raise InvalidRequest(f"{where}: tool type {tool['type']!r} ({tool['name']}) is an Anthropic server tool "
                             "that this backend cannot run; only custom tools with an input_schema translate",
                             param=where)
    function: dict[str, Any] = {"name": tool["name"]}
    if tool.get("description"):
        function["description"] = tool["description"]
    function["parameters"] = tool.get("input_schema") or {"type": "object", "properties": {}}
    return {"type": "function", "function": function}


def _tool_choice(choice: dict[str, Any], chat: dict[str, Any]) -> None:
    kind = choice.get("type")
    if kind == "auto":
        chat["tool_choice"] = "auto"
    elif kind == "any":
        chat["tool_choice"] = "required"
    elif kind == "none":
        chat["tool_choice"] = "none"
    elif kind == "tool" and isinstance(choice.get("name"), str):
        chat["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        raise InvalidRequest(f"tool_choice type {kind!r} is not one of auto, any, tool, none", param="tool_choice")
    if choice.get("disable_parallel_tool_use") is True and "tools" in chat:
        chat["parallel_tool_calls"] = False


def _effort(thinking: Any, output_config: Any) -> str | None:
    """``thinking`` as a reasoning effort: a budget by size, adaptive by ``output_config.effort``."""
    if not isinstance(thinking, dict):
        return None
    kind = thinking.get("type")
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int):
            return "medium"
        return next((effort for limit, effort in _BUDGET_EFFORT if budget < limit), "high")
    if kind == "adaptive":
        effort = output_config.get("effort") if isinstance(output_config, dict) else None
        return _EFFORTS.get(effort, "high") if isinstance(effort, str) else "high"
    return None


def _unsupported(block: Any, where: str, why: str = "") -> InvalidRequest:
    kind = block.get("type") if isinstance(block, dict) else type(block).__name__
    reason = why or "it has no chat-completions equivalent, and dropping it would change the request"
    return InvalidRequest(f"{where}: content block type {kind!r} cannot be sent to this backend: {reason}",
                          param=where)
