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

#: Sampling fields copied as they are (same name, same meaning in both protocols), after ``max_tokens``.
_SAME = ("temperature", "top_p", "top_k")
#: Every request field besides model, messages, max_tokens, system and stream that becomes part
#: of the canonical body. The short requests most clients send have none of them: one set check
#: then skips all their lookups.
_OPTIONAL = frozenset((*_SAME, "stop_sequences", "tools", "tool_choice", "thinking", "metadata"))
#: The roles a message may have; each keeps its name in chat completions.
_ROLES = ("user", "assistant", "system")
#: ``thinking.budget_tokens`` thresholds for reasoning_effort (below 4k low, below 16k medium).
_BUDGET_EFFORT = ((4000, "low"), (16000, "medium"))
_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "max": "high"}


def to_chat(body: dict[str, Any], *, stream: bool) -> dict[str, Any]:
    """The canonical body for ``body`` (already checked for ``model`` and ``messages``)."""
    messages = _system(body.get("system"))
    for index, message in enumerate(body["messages"]):
        _add_message(messages, message, index)
    chat: dict[str, Any] = {"model": body["model"], "messages": messages}
    if body.get("max_tokens") is not None:
        chat["max_tokens"] = body["max_tokens"]
    if not _OPTIONAL.isdisjoint(body):
        _add_options(body, chat)
    chat["stream"] = stream
    if stream:
        chat["stream_options"] = {"include_usage": True}
    return chat


def _add_options(body: dict[str, Any], chat: dict[str, Any]) -> None:
    """The optional fields (see ``_OPTIONAL``), in the canonical body's order."""
    for key in _SAME:
        if body.get(key) is not None:
            chat[key] = body[key]
    if body.get("stop_sequences"):
        chat["stop"] = list(body["stop_sequences"])
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise InvalidRequest("tools must be a list of tool definitions", param="tools")
    if tools:
        chat["tools"] = [_tool(tool, index) for index, tool in enumerate(tools)]
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        _tool_choice(choice, chat)
    effort = _effort(body.get("thinking"), body.get("output_config"))
    if effort:
        chat["reasoning_effort"] = effort
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str) and metadata["user_id"]:
        chat["user"] = metadata["user_id"]


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


def _add_message(messages: list[dict[str, Any]], message: Any, index: int) -> None:
    """Append the chat messages for ``messages[index]`` (none, one, or tool messages and one).

    Content that is a plain string (most turns of a short conversation) is the chat message's
    content as it is, whatever the role: that is what the block path below makes of a single
    text block, so the blocks are not built. Error paths (``messages.<index>...``) are spelled
    out only when an error is raised."""
    if not isinstance(message, dict):
        raise InvalidRequest(f"messages.{index} must be an object with 'role' and 'content'", param=f"messages.{index}")
    role = message.get("role")
    content = message.get("content")
    if isinstance(content, str) and role in _ROLES:
        if content:
            messages.append({"role": role, "content": content})
    elif role == "system":
        text = _text_of(content, f"messages.{index}.content")
        if text:
            messages.append({"role": "system", "content": text})
    elif role == "user":
        _add_user(messages, _blocks(content, index), index)
    elif role == "assistant":
        _add_assistant(messages, _blocks(content, index), index)
    else:
        raise InvalidRequest(f"messages.{index}.role must be 'user', 'assistant' or 'system', not {role!r}",
                             param=f"messages.{index}.role")


def _blocks(content: Any, index: int) -> list[dict[str, Any]]:
    """A turn's content blocks, each checked for a ``type`` before any is translated (so the
    first malformed block is the error, whatever the blocks before it hold)."""
    if not isinstance(content, list):
        raise InvalidRequest(f"messages.{index}.content must be a string or a list of blocks",
                             param=f"messages.{index}.content")
    for position, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            where = _block_path(index, position)
            raise InvalidRequest(f"{where} must be a block with a 'type'", param=where)
    return content


def _block_path(index: int, position: int) -> str:
    """Where a content block is, for an error message."""
    return f"messages.{index}.content.{position}"


def _add_user(messages: list[dict[str, Any]], blocks: list[dict[str, Any]], index: int) -> None:
    """Tool results first (one tool message each, in order), then the user's own parts: one
    string when they are all text (some OpenAI-compatible servers take nothing else)."""
    parts: list[dict[str, Any]] = []
    images = False
    for position, block in enumerate(blocks):
        kind = block["type"]
        if kind == "text":
            if block.get("text"):
                parts.append({"type": "text", "text": str(block["text"])})
        elif kind == "image":
            part = _image(block)
            if part is None:
                raise _image_error(block, _block_path(index, position))
            parts.append(part)
            images = True
        elif kind == "tool_result":
            message, returned = _tool_result(block, index, position)
            messages.append(message)
            if returned:
                parts.extend(returned)
                images = True
        else:
            raise _unsupported(block, _block_path(index, position))
    if parts:
        messages.append({"role": "user", "content": parts if images else "\n\n".join([part["text"] for part in parts])})


def _image(block: dict[str, Any]) -> dict[str, Any] | None:
    """The ``image_url`` part for an image block; ``None`` when its source cannot be translated."""
    source = block.get("source")
    if not isinstance(source, dict):
        return None
    kind = source.get("type")
    if kind == "base64":
        url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    elif kind == "url" and isinstance(source.get("url"), str):
        url = source["url"]
    else:
        return None
    return {"type": "image_url", "image_url": {"url": url}}


def _image_error(block: dict[str, Any], where: str) -> InvalidRequest:
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    return InvalidRequest(f"{where}: image source type {kind!r} cannot be translated for this backend "
                          "(use 'base64' or 'url')", param=where)


def _tool_result(block: dict[str, Any], index: int, position: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One tool message; images in the result go to the user message after the tool messages
    (chat tool messages carry text only)."""
    content = block.get("content", "")
    images: list[dict[str, Any]] = []
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        texts = []
        for inner, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                if part.get("text"):
                    texts.append(str(part["text"]))
            elif kind == "image":
                image = _image(part)
                if image is None:
                    raise _image_error(part, f"{_block_path(index, position)}.content.{inner}")
                images.append(image)
            else:
                raise _unsupported(part, f"{_block_path(index, position)}.content.{inner}")
        text = "\n\n".join(texts)
    else:
        where = _block_path(index, position)
        raise InvalidRequest(f"{where}.content must be a string or a list of blocks", param=f"{where}.content")
    if block.get("is_error") is True:
        text = f"Error: {text}" if text else "Error"
    if images:
        images.insert(0, {"type": "text", "text": f"(images returned by tool call {block.get('tool_use_id')})"})
    return {"role": "tool", "tool_call_id": str(block.get("tool_use_id", "")), "content": text}, images


def _add_assistant(messages: list[dict[str, Any]], blocks: list[dict[str, Any]], index: int) -> None:
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for position, block in enumerate(blocks):
        kind = block["type"]
        if kind == "text":
            if block.get("text"):
                texts.append(str(block["text"]))
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") if block.get("input") is not None else {}).decode()
            calls.append({"id": str(block.get("id", "")), "type": "function",
                          "function": {"name": str(block.get("name", "")), "arguments": arguments}})
        elif kind == "thinking":
            if block.get("thinking"):
                reasoning.append(str(block["thinking"]))
        elif kind == "redacted_thinking":
            continue  # encrypted for Anthropic only: no other backend can read it
        else:
            raise _unsupported(block, _block_path(index, position))
    if not texts and not calls and not reasoning:
        return
    message: dict[str, Any] = {"role": "assistant", "content": "\n\n".join(texts) if texts else None}
    if reasoning:
        message["reasoning_content"] = "\n\n".join(reasoning)
    if calls:
        message["tool_calls"] = calls
    messages.append(message)


def _tool(tool: Any, index: int) -> dict[str, Any]:
    if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
        raise InvalidRequest(f"tools.{index} must be a tool with a 'name'", param=f"tools.{index}")
    if tool.get("type") not in (None, "custom"):
        raise InvalidRequest(f"tools.{index}: tool type {tool['type']!r} ({tool['name']}) is an Anthropic server "
                             "tool that this backend cannot run; only custom tools with an input_schema translate",
                             param=f"tools.{index}")
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
