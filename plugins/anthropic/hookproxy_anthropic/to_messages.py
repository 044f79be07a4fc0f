"""A canonical chat-completions body as an Anthropic Messages request (OpenAI clients of the
``anthropic`` connector).

The same rules as the other direction, turned around: system and developer messages become
``system``; consecutive tool messages become one user turn of ``tool_result`` blocks in order;
``required`` is ``tool_choice: any``; ``stop`` is ``stop_sequences``; ``reasoning_effort`` is a
thinking budget; ``user`` is ``metadata.user_id``. Empty text never goes out, and
``reasoning_content`` of earlier turns is dropped: Anthropic accepts thinking only with its own
signature. Fields with no Anthropic meaning (``n``, ``logprobs``, ``response_format``, vendor
fields) are not forwarded.
"""

from __future__ import annotations

from typing import Any

import orjson

from hookproxy import InvalidRequest

#: reasoning_effort to a thinking budget (tokens); none/minimal mean no thinking.
EFFORT_BUDGETS = {"low": 2048, "medium": 8192, "high": 24576, "xhigh": 32768, "max": 32768}
MIN_BUDGET = 1024


def to_messages(chat: dict[str, Any], default_max_tokens: int) -> dict[str, Any]:
    system, turns = _conversation(chat.get("messages") or [])
    max_tokens = chat.get("max_completion_tokens") or chat.get("max_tokens") or default_max_tokens
    body: dict[str, Any] = {"model": chat["model"], "max_tokens": max_tokens, "messages": turns}
    if system:
        body["system"] = "\n\n".join(system)
    for key in ("temperature", "top_p", "top_k"):
        if chat.get(key) is not None:
            body[key] = chat[key]
    stop = chat.get("stop")
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    _tools(chat, body)
    _thinking(chat.get("reasoning_effort"), body)
    if isinstance(chat.get("user"), str) and chat["user"]:
        body["metadata"] = {"user_id": chat["user"]}
    if chat.get("stream"):
        body["stream"] = True
    return body


def _conversation(messages: list[Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """System texts (hoisted: Anthropic has one system prompt) and alternating turns."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        where = f"messages.{index}"
        if not isinstance(message, dict):
            raise InvalidRequest(f"{where} must be an object", param=where)
        role = message.get("role")
        if role in ("system", "developer"):
            text = _text(message.get("content"), where)
            if text:
                system.append(text)
        elif role == "user":
            _append(turns, "user", _user_blocks(message.get("content"), where))
        elif role == "assistant":
            _append(turns, "assistant", _assistant_blocks(message, where))
        elif role == "tool":
            block = {"type": "tool_result", "tool_use_id": str(message.get("tool_call_id", "")),
                     "content": _text(message.get("content"), where)}
            _append(turns, "user", [block])
        else:
            raise InvalidRequest(f"{where}.role {role!r} cannot be sent to an Anthropic backend", param=f"{where}.role")
    return system, turns


def _append(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    """Add blocks as a turn, merged into the previous one of the same role (tool results and the
    user text after them are one user turn)."""
    if not blocks:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": blocks})


def _text(content: Any, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n\n".join(str(part.get("text", "")) for part in content
                           if isinstance(part, dict) and part.get("type") == "text" and part.get("text"))
    raise InvalidRequest(f"{where}.content must be a string or a list of parts", param=f"{where}.content")


def _user_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise InvalidRequest(f"{where}.content must be a string or a list of parts", param=f"{where}.content")
    blocks = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if part.get("text"):
                blocks.append({"type": "text", "text": str(part["text"])})
        elif kind == "image_url":
            blocks.append(_image(part, f"{where}.content.{index}"))
        else:
            raise InvalidRequest(f"{where}.content.{index}: part type {kind!r} cannot be sent to an Anthropic "
                                 "backend", param=f"{where}.content.{index}")
    return blocks


def _image(part: dict[str, Any], where: str) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise InvalidRequest(f"{where}: image_url.url is required", param=where)
    if url.startswith("data:"):
        header, _, data = url[5:].partition(",")
        media_type = header.split(";", 1)[0] or "image/png"
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _assistant_blocks(message: dict[str, Any], where: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    text = _text(message.get("content"), where)
    if text:
        blocks.append({"type": "text", "text": text})
    for index, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            raise InvalidRequest(f"{where}.tool_calls.{index} must have a function", param=f"{where}.tool_calls")
        arguments = function.get("arguments") or "{}"
        try:
            parsed = orjson.loads(arguments) if isinstance(arguments, str) else arguments
        except orjson.JSONDecodeError:
            raise InvalidRequest(f"{where}.tool_calls.{index}.function.arguments is not JSON",
                                 param=f"{where}.tool_calls") from None
        blocks.append({"type": "tool_use", "id": str(call.get("id", "")), "name": str(function.get("name", "")),
                       "input": parsed if isinstance(parsed, dict) else {"value": parsed}})
    return blocks


def _tools(chat: dict[str, Any], body: dict[str, Any]) -> None:
    tools = []
    for index, tool in enumerate(chat.get("tools") or []):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not function.get("name"):
            raise InvalidRequest(f"tools.{index} must be a function tool with a name", param=f"tools.{index}")
        entry = {"name": function["name"], "input_schema": function.get("parameters") or {"type": "object"}}
        if function.get("description"):
            entry["description"] = function["description"]
        tools.append(entry)
    if tools:
        body["tools"] = tools
    choice = chat.get("tool_choice")
    anthropic: dict[str, Any] | None = None
    if choice == "auto":
        anthropic = {"type": "auto"}
    elif choice == "required":
        anthropic = {"type": "any"}
    elif choice == "none":
        anthropic = {"type": "none"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        anthropic = {"type": "tool", "name": choice["function"].get("name", "")}
    if chat.get("parallel_tool_calls") is False and tools:
        anthropic = {**(anthropic or {"type": "auto"}), "disable_parallel_tool_use": True}
    if anthropic is not None:
        body["tool_choice"] = anthropic


def _thinking(effort: Any, body: dict[str, Any]) -> None:
    budget = EFFORT_BUDGETS.get(effort) if isinstance(effort, str) else None
    if budget is None:
        return
    budget = min(budget, body["max_tokens"] - 1)
    if budget >= MIN_BUDGET:
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
