"""A Responses request (``POST /v1/responses``) as the canonical chat-completions body.

- ``instructions`` and ``developer``/``system`` messages become system messages.
- ``input`` is a string (one user message) or items: ``message`` (``input_text``,
  ``input_image``, ``output_text``), ``function_call`` and ``custom_tool_call`` (consecutive
  calls become one assistant message with several tool calls), their outputs (tool messages
  with string content, right after the assistant message that made the calls), and
  ``reasoning`` (its summary text goes back as ``reasoning_content`` on the next assistant
  turn; ``encrypted_content`` belongs to the service that made it and is never sent on).
- ``max_output_tokens``, ``temperature``, ``top_p``, ``tool_choice``, ``parallel_tool_calls``,
  ``text.format`` (as ``response_format``) and ``reasoning.effort`` (as ``reasoning_effort``)
  are translated; ``store``, ``include``, ``prompt_cache_key``, ``metadata``,
  ``client_metadata`` and the like are accepted and not forwarded (backends reject them).
"""

from __future__ import annotations

import logging
from typing import Any

from hookproxy import InvalidRequest

from .tools import ToolMap, chat_tool_choice, chat_tools, custom_arguments

log = logging.getLogger("hookproxy.responses")

#: Fields the Responses API has and a chat backend cannot serve: a clear 400 beats a silent change.
_REFUSED = {
    "background": "background responses are not supported by hookproxy; send the request without 'background'",
    "conversation": "conversation objects are not supported by hookproxy; send the history in 'input'",
    "prompt": "stored prompt templates are not supported by hookproxy; send the text in 'instructions'",
}
#: Message roles as chat completions names them.
_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}


def validate(body: dict[str, Any]) -> tuple[str, bool]:
    """The model selector and whether to stream; the few fields every request needs."""
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("'model' is required and must be a non-empty string", param="model")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be a boolean", param="stream")
    if not _REFUSED.keys().isdisjoint(body):  # one set check for the fields few bodies have
        for field, message in _REFUSED.items():
            if body.get(field):
                raise InvalidRequest(message, param=field)
    return model, bool(stream)


def input_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's ``input`` as a list of items (a string is one user message)."""
    value = body.get("input")
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidRequest("'input' must be a string or an array of items", param="input")
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise InvalidRequest(f"input[{index}] must be an object", param=f"input.{index}")
    return value


def to_chat(body: dict[str, Any], items: list[dict[str, Any]], names: ToolMap, *,
            model: str, stream: bool, replay_reasoning: bool) -> dict[str, Any]:
    """The canonical chat-completions body for a validated Responses request."""
    tools = chat_tools(body.get("tools"), names)
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise InvalidRequest("'instructions' must be a string", param="instructions")
        if instructions:
            messages.append({"role": "system", "content": instructions})
    messages.extend(to_messages(items, names, replay_reasoning=replay_reasoning))
    if not messages:
        raise InvalidRequest("'input' is required and must hold at least one message", param="input")
    chat: dict[str, Any] = {"model": model, "messages": messages}
    if stream:
        chat["stream"] = True  # usage: the client request says it wants it (the connector asks for it)
    if tools:
        chat["tools"] = tools
        choice = chat_tool_choice(body.get("tool_choice"), names)
        if choice is not None:
            chat["tool_choice"] = choice
        if isinstance(body.get("parallel_tool_calls"), bool):
            chat["parallel_tool_calls"] = body["parallel_tool_calls"]
    _sampling(body, chat)
    return chat


#: The fields ``_sampling`` translates besides ``max_output_tokens``: most bodies have none, and
#: one set check then skips their lookups.
_SAMPLING = frozenset(("temperature", "top_p", "user", "text", "reasoning"))
_NUMBER = (int, float)


def _sampling(body: dict[str, Any], chat: dict[str, Any]) -> None:
    limit = body.get("max_output_tokens")
    if limit is not None:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise InvalidRequest("'max_output_tokens' must be a positive integer", param="max_output_tokens")
        chat["max_tokens"] = limit
    if _SAMPLING.isdisjoint(body):
        return
    for field in ("temperature", "top_p"):
        value = body.get(field)
        if value is not None:
            if not isinstance(value, _NUMBER) or isinstance(value, bool):
                raise InvalidRequest(f"'{field}' must be a number", param=field)
            chat[field] = value
    if isinstance(body.get("user"), str):
        chat["user"] = body["user"]
    text = body.get("text")
    if isinstance(text, dict) and isinstance(text.get("format"), dict):
        response_format = _response_format(text["format"])
        if response_format is not None:
            chat["response_format"] = response_format
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and isinstance(reasoning.get("effort"), str):
        chat["reasoning_effort"] = reasoning["effort"]


def _response_format(format_: dict[str, Any]) -> dict[str, Any] | None:
    kind = format_.get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        schema = {key: format_[key] for key in ("name", "schema", "strict", "description") if key in format_}
        return {"type": "json_schema", "json_schema": schema}
    raise InvalidRequest(f"text.format type {kind!r} is not supported; use text, json_object or json_schema",
                         param="text.format")


def to_messages(items: list[dict[str, Any]], names: ToolMap, *, replay_reasoning: bool) -> list[dict[str, Any]]:
    """Chat messages for Responses input items (see the module docstring for the rules)."""
    builder = _Messages(names, replay_reasoning)
    for index, item in enumerate(items):
        builder.add(item, index)
    if not builder.tools:
        return builder.messages  # no call and no output: nothing to pair
    return _pair_tool_messages(builder.messages)


def _where(index: int) -> str:
    """Where an input item is, for an error message or a log line (spelled out only then)."""
    return f"input.{index}"


class _Messages:
    """Chat messages built item by item: a reasoning item waits for the assistant turn it
    precedes, consecutive calls join one assistant message."""

    __slots__ = ("messages", "names", "reasoning", "replay_reasoning", "tools")

    def __init__(self, names: ToolMap, replay_reasoning: bool) -> None:
        self.names = names
        self.replay_reasoning = replay_reasoning
        self.messages: list[dict[str, Any]] = []
        self.reasoning: list[str] = []
        #: Whether a tool call or a tool output was added (their messages then need pairing).
        self.tools = False

    def add(self, item: dict[str, Any], index: int) -> None:
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            self._message(item, index)
        elif kind in ("function_call", "custom_tool_call"):
            self._call(item, index, custom=kind == "custom_tool_call")
        elif kind in ("function_call_output", "custom_tool_call_output"):
            call_id = _string(item, "call_id", index)
            self.messages.append({"role": "tool", "tool_call_id": call_id,
                                  "content": output_text(item.get("output"), index)})
            self.tools = True
        elif kind == "reasoning":
            if self.replay_reasoning:
                self.reasoning.extend(_texts(item.get("summary")) or _texts(item.get("content")))
        elif kind == "item_reference":
            raise InvalidRequest("item references need OpenAI's item store; send the item itself", param=_where(index))
        else:
            log.info("dropping %s: input items of type %r have no chat-completions form", _where(index), kind)

    def _message(self, item: dict[str, Any], index: int) -> None:
        role = _ROLES.get(str(item.get("role")))
        if role is None:
            raise InvalidRequest(f"{_where(index)}.role must be one of user, assistant, system, developer",
                                 param=f"{_where(index)}.role")
        content = item.get("content")
        if not isinstance(content, str):
            content = message_content(content, index, images=role == "user")
        if role == "assistant":
            self._assistant()["content"] = content if isinstance(content, str) else ""
            return
        if content:
            self.messages.append({"role": role, "content": content})

    def _call(self, item: dict[str, Any], index: int, *, custom: bool) -> None:
        call_id = _string(item, "call_id", index)
        name = self.names.canonical(_string(item, "name", index), item.get("namespace"), custom=custom)
        if custom:
            raw = item.get("input")
            arguments = custom_arguments(raw if isinstance(raw, str) else "")
        else:
            given = item.get("arguments")
            arguments = given if isinstance(given, str) and given else "{}"
        last = self.messages[-1] if self.messages else None
        message = last if last is not None and last["role"] == "assistant" and not self.reasoning \
            else self._assistant()
        message.setdefault("tool_calls", []).append(
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}})
        self.tools = True

    def _assistant(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": None}
        if self.reasoning:
            message["reasoning_content"] = "\n\n".join(self.reasoning)
            self.reasoning = []
        self.messages.append(message)
        return message


def _pair_tool_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Put each call's tool message right after the assistant message that made it.

    Chat backends reject an assistant message with tool calls that is not followed by one tool
    message per call. A call without an output (an interrupted turn) gets ``aborted``, as the
    Codex CLI itself records it; an output whose call is not in the history is dropped.
    """
    outputs: dict[str, dict[str, Any]] = {}
    for message in messages:
        if message["role"] == "tool":
            outputs.setdefault(message["tool_call_id"], message)
    result: list[dict[str, Any]] = []
    placed: set[str] = set()
    for message in messages:
        if message["role"] == "tool":
            if message["tool_call_id"] not in placed:
                log.info("dropping the output of call %r: no earlier item made that call", message["tool_call_id"])
            continue
        result.append(message)
        for call in message.get("tool_calls") or ():
            call_id = call["id"]
            result.append(outputs.get(call_id) or {"role": "tool", "tool_call_id": call_id, "content": "aborted"})
            placed.add(call_id)
    return result


def message_content(content: Any, index: int, *, images: bool) -> str | list[dict[str, Any]]:
    """The content of message ``input[index]``: one string when it is all text, else chat content parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        where = f"{_where(index)}.content"
        raise InvalidRequest(f"{where} must be a string or an array of content parts", param=where)
    texts: list[str] = []  # the texts, while every part is text (the usual case)
    parts: list[dict[str, Any]] | None = None  # every part, from the first image on
    for position, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in _TEXT_PARTS:
            text = part.get("refusal") if kind == "refusal" else part.get("text")
            if isinstance(text, str) and text:
                if parts is None:
                    texts.append(text)
                else:
                    parts.append({"type": "text", "text": text})
        elif kind == "input_image" and images:
            if parts is None:
                parts = [{"type": "text", "text": text} for text in texts]
            parts.append(_image(part, index, position))
        else:
            where = f"{_where(index)}.content"
            raise InvalidRequest(f"{where}[{position}]: content of type {kind!r} is not supported here",
                                 param=f"{where}.{position}")
    return "\n".join(texts) if parts is None else parts


#: Content part types whose text is the message's text.
_TEXT_PARTS = ("input_text", "output_text", "text", "refusal", "summary_text")


def _image(part: dict[str, Any], index: int, position: int) -> dict[str, Any]:
    url = part.get("image_url")
    if not isinstance(url, str) or not url:
        where = f"{_where(index)}.content.{position}"
        raise InvalidRequest(f"{where}: images need an 'image_url' (a URL or data URL); file ids are not supported",
                             param=where)
    image: dict[str, Any] = {"url": url}
    if part.get("detail") in ("low", "high"):
        image["detail"] = part["detail"]
    return {"type": "image_url", "image_url": image}


def output_text(output: Any, index: int) -> str:
    """A tool output (of ``input[index]``) as the one string chat completions accepts."""
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        texts = []
        for part in output:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif isinstance(part, dict):
                log.info("dropping a %r part of the tool output at %s: tool messages carry text only",
                         part.get("type"), _where(index))
        return "\n".join(texts)
    if output is None:
        return ""
    raise InvalidRequest(f"{_where(index)}.output must be a string or an array of content parts",
                         param=f"{_where(index)}.output")


def _texts(parts: Any) -> list[str]:
    if not isinstance(parts, list):
        return []
    return [part["text"] for part in parts if isinstance(part, dict) and isinstance(part.get("text"), str)
            and part["text"]]


def _string(item: dict[str, Any], key: str, index: int) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value:
        where = f"{_where(index)}.{key}"
        raise InvalidRequest(f"{where} must be a non-empty string", param=where)
    return value
