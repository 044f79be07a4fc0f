"""Canonical chunk events as the Responses event stream.

The grammar clients such as the Codex CLI and the openai SDK expect, every event with a
monotonic ``sequence_number``::

    response.created, response.in_progress
    per item:  response.output_item.added
               reasoning: response.reasoning_summary_part.added,
                          response.reasoning_summary_text.delta... .done,
                          response.reasoning_summary_part.done
               text:      response.content_part.added, response.output_text.delta... .done,
                          response.content_part.done
               calls:     response.function_call_arguments.delta... .done, or
                          response.custom_tool_call_input.delta... .done
               response.output_item.done (the complete item: clients build their answer from it)
    last:      response.completed, response.incomplete (length, content filter) or
               response.failed (the core calls ``error_event`` for a failure mid-stream)

Each item has its own id and ``output_index``; parallel tool calls are separate items whose
argument deltas are sent as they arrive. Usage is read from the upstream's usage chunk
(the openai-compatible connector asks for it with ``stream_options.include_usage``).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from hookproxy import ProxyError, UpstreamError, UpstreamUnreachable

from .response import INCOMPLETE, ResponseState, call_item, failure, new_id, reasoning_text, usage_from_chat
from .tools import ClientTool

#: Called with the output items of a response that finished (completed or incomplete), and the
#: response object of its last event.
Finished = Callable[[ResponseState, list[dict[str, Any]], dict[str, Any]], Awaitable[None]]


def encode(state: ResponseState, kind: str, payload: dict[str, Any]) -> bytes:
    """One SSE event, its type in both the ``event:`` line and the data (clients read either)."""
    payload = {"type": kind, "sequence_number": next(state.sequence), **payload}
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def opening(state: ResponseState) -> bytes:
    """``response.created`` and ``response.in_progress``, once per response."""
    state.started = True
    response = state.response("in_progress")
    return (encode(state, "response.created", {"response": response})
            + encode(state, "response.in_progress", {"response": response}))


def failed(state: ResponseState, error: ProxyError) -> bytes:
    """The last bytes of a response that failed (after an opening, if none went out yet)."""
    head = b"" if state.started else opening(state)
    return head + encode(state, "response.failed", {"response": state.response("failed", error=failure(error))})


@dataclass
class _Item:
    kind: str
    id: str
    index: int
    parts: list[str] = field(default_factory=list)
    # tool calls only
    call_id: str = ""
    name: str = ""
    tool: ClientTool | None = None
    custom: _InputStream | None = None
    pending: list[str] = field(default_factory=list)


class StreamTranslator:
    """Turns one canonical stream into Responses events (see the module docstring)."""

    def __init__(self, state: ResponseState) -> None:
        self.state = state
        self.output: list[dict[str, Any] | None] = []
        self.text: _Item | None = None
        self.reasoning: _Item | None = None
        self.calls: dict[int, _Item] = {}
        self.finish: str | None = None
        self.usage: Any = None
        self.done = False

    async def translate(self, chunks: AsyncIterator[bytes], finished: Finished | None = None) -> AsyncIterator[bytes]:
        """The events for ``chunks``; ``finished`` gets the output items before the last event
        goes out (so a client's next request always finds a stored response)."""
        yield opening(self.state)
        parser = DataEvents()
        async for raw in chunks:  # one write per upstream read, however many events it held
            out, error = self.events(parser.feed(raw))
            if out:
                yield out
            if error is not None:
                raise error
            if self.done:
                break
        else:
            out, error = self.events(parser.close())
            if out:
                yield out
            if error is not None:
                raise error
        if not self.done and self.finish is None:
            raise UpstreamUnreachable("the backend ended its stream before the answer was finished")
        closing = self.close_all()
        response, last = self.final()
        if finished is not None:
            await finished(self.state, self.items, response)
        yield closing + last

    def events(self, events: list[bytes]) -> tuple[bytes, ProxyError | None]:
        """The bytes for some events' data, and the error that ended them (the bytes before it
        still go out, so sequence numbers stay without gaps)."""
        out = b""
        for data in events:
            if data == b"[DONE]" or data.strip() == b"[DONE]":
                self.done = True
                break
            try:
                out += self.chunk(orjson.loads(data))
            except orjson.JSONDecodeError:
                return out, UpstreamUnreachable(f"the backend sent malformed stream data: {data[:200]!r}")
            except ProxyError as error:
                return out, error
        return out, None

    def chunk(self, payload: Any) -> bytes:
        if not isinstance(payload, dict):
            return b""
        if payload.get("error"):
            raise _stream_error(payload["error"])
        if isinstance(payload.get("usage"), dict):
            self.usage = payload["usage"]
        out = b""
        choices = payload.get("choices")
        for choice in choices if isinstance(choices, list) else ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict):
                out += self.delta(delta)
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
        return out

    def delta(self, delta: dict[str, Any]) -> bytes:
        out = b""
        reasoning = reasoning_text(delta)
        if reasoning:
            out += self.close_text() + self.reasoning_delta(reasoning)
        content = delta.get("content")
        if isinstance(content, str) and content:
            out += self.close_reasoning() + self.text_delta(content)
        calls = delta.get("tool_calls")
        if isinstance(calls, list) and calls:
            out += self.close_reasoning() + self.close_text()
            for call in calls:
                if isinstance(call, dict):
                    out += self.call_delta(call)
        return out

    # --- items -------------------------------------------------------------------------------

    def _open(self, kind: str, prefix: str) -> _Item:
        item = _Item(kind, self.state.item_id(prefix), len(self.output))
        self.output.append(None)
        return item

    def _where(self, item: _Item) -> dict[str, Any]:
        return {"item_id": item.id, "output_index": item.index}

    def _added(self, item: _Item, body: dict[str, Any]) -> bytes:
        return encode(self.state, "response.output_item.added", {"output_index": item.index, "item": body})

    def _finished(self, item: _Item, body: dict[str, Any]) -> bytes:
        self.output[item.index] = body
        return encode(self.state, "response.output_item.done", {"output_index": item.index, "item": body})

    def reasoning_delta(self, text: str) -> bytes:
        state, out = self.state, b""
        item = self.reasoning
        if item is None:
            item = self.reasoning = self._open("reasoning", "rs")
            out += self._added(item, {"id": item.id, "type": "reasoning", "summary": []})
            out += encode(state, "response.reasoning_summary_part.added",
                          {**self._where(item), "summary_index": 0, "part": {"type": "summary_text", "text": ""}})
        item.parts.append(text)
        return out + encode(state, "response.reasoning_summary_text.delta",
                            {**self._where(item), "summary_index": 0, "delta": text})

    def close_reasoning(self) -> bytes:
        item, self.reasoning = self.reasoning, None
        if item is None:
            return b""
        state, text = self.state, "".join(item.parts)
        part = {"type": "summary_text", "text": text}
        return (encode(state, "response.reasoning_summary_text.done", {**self._where(item), "summary_index": 0,
                                                                      "text": text})
                + encode(state, "response.reasoning_summary_part.done", {**self._where(item), "summary_index": 0,
                                                                        "part": part})
                + self._finished(item, {"id": item.id, "type": "reasoning", "summary": [part]}))

    def text_delta(self, text: str) -> bytes:
        state, out = self.state, b""
        item = self.text
        if item is None:
            item = self.text = self._open("message", "msg")
            out += self._added(item, {"id": item.id, "type": "message", "role": "assistant",
                                      "status": "in_progress", "content": []})
            out += encode(state, "response.content_part.added", {**self._where(item), "content_index": 0, "part": {
                "type": "output_text", "text": "", "annotations": [], "logprobs": []}})
        item.parts.append(text)
        return out + encode(state, "response.output_text.delta",
                            {**self._where(item), "content_index": 0, "delta": text, "logprobs": []})

    def close_text(self) -> bytes:
        item, self.text = self.text, None
        if item is None:
            return b""
        state, text = self.state, "".join(item.parts)
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        return (encode(state, "response.output_text.done", {**self._where(item), "content_index": 0, "text": text,
                                                            "logprobs": []})
                + encode(state, "response.content_part.done", {**self._where(item), "content_index": 0,
                                                               "part": part})
                + self._finished(item, {"id": item.id, "type": "message", "role": "assistant",
                                        "status": "completed", "content": [part]}))

    def _call_index(self, call: dict[str, Any]) -> int:
        """Which call a delta continues. Some backends omit ``index``: a new ``id`` is then a new
        call, and a delta without one continues the last call."""
        index = call.get("index")
        if isinstance(index, int):
            return index
        call_id = call.get("id")
        for known, item in self.calls.items():
            if call_id and item.call_id == call_id:
                return known
        if call_id or not self.calls:
            return max(self.calls, default=-1) + 1
        return max(self.calls)

    def call_delta(self, call: dict[str, Any]) -> bytes:
        index = self._call_index(call)
        function: dict[str, Any] = call["function"] if isinstance(call.get("function"), dict) else {}
        item = self.calls.get(index)
        if item is None:
            item = self.calls[index] = _Item("call", "", -1)
        if not item.call_id and isinstance(call.get("id"), str):
            item.call_id = call["id"]
        if not item.name and isinstance(function.get("name"), str):
            item.name = function["name"]
        fragment = function.get("arguments")
        if isinstance(fragment, str) and fragment:
            item.pending.append(fragment)
        if not item.name:
            return b""  # arguments before the name: kept until the name says which tool it is
        out = self._open_call(item) if item.tool is None else b""
        pending, item.pending = item.pending, []
        for piece in pending:
            out += self._arguments(item, piece)
        return out

    def _open_call(self, item: _Item) -> bytes:
        tool = item.tool = self.state.names.client(item.name)
        opened = self._open("custom_tool_call" if tool.custom else "function_call", "ctc" if tool.custom else "fc")
        item.kind, item.id, item.index = opened.kind, opened.id, opened.index
        item.call_id = item.call_id or new_id("call")
        body: dict[str, Any] = {"id": item.id, "type": item.kind, "status": "in_progress",
                                "call_id": item.call_id, "name": tool.name}
        if tool.custom:
            item.custom = _InputStream()
            body["input"] = ""
        else:
            body["arguments"] = ""
        if tool.namespace:
            body["namespace"] = tool.namespace
        return self._added(item, body)

    def _arguments(self, item: _Item, fragment: str) -> bytes:
        item.parts.append(fragment)
        if item.custom is None:
            return encode(self.state, "response.function_call_arguments.delta", {**self._where(item),
                                                                                  "delta": fragment})
        text = item.custom.feed(fragment)
        if not text:
            return b""
        return encode(self.state, "response.custom_tool_call_input.delta", {**self._where(item), "delta": text})

    def close_call(self, item: _Item) -> bytes:
        if item.tool is None:  # a call that never got a name: nothing a client could run
            return b""
        arguments = "".join(item.parts)
        body = call_item(self.state, item.id, item.call_id, item.name, arguments or "{}")
        if item.custom is not None:
            value = body["input"]
            sent = item.custom.sent
            rest = value[len(sent):] if value.startswith(sent) else ""
            out = encode(self.state, "response.custom_tool_call_input.delta",
                         {**self._where(item), "delta": rest}) if rest else b""
            out += encode(self.state, "response.custom_tool_call_input.done", {**self._where(item), "input": value})
        else:
            out = encode(self.state, "response.function_call_arguments.done",
                         {**self._where(item), "name": body["name"], "arguments": body["arguments"]})
        return out + self._finished(item, body)

    def close_all(self) -> bytes:
        out = self.close_reasoning() + self.close_text()
        for item in sorted(self.calls.values(), key=lambda call: call.index):
            out += self.close_call(item)
        self.calls.clear()
        return out

    def final(self) -> tuple[dict[str, Any], bytes]:
        """The finished response object, and its last event."""
        output = [item for item in self.output if item is not None]
        usage = usage_from_chat(self.usage)
        incomplete = INCOMPLETE.get(self.finish or "")
        if incomplete:
            response = self.state.response("incomplete", output, usage, incomplete=incomplete)
            return response, encode(self.state, "response.incomplete", {"response": response})
        response = self.state.response("completed", output, usage)
        return response, encode(self.state, "response.completed", {"response": response})

    @property
    def items(self) -> list[dict[str, Any]]:
        return [item for item in self.output if item is not None]


def _stream_error(detail: Any) -> UpstreamError:
    """An error event inside an upstream stream, as the error the core ends the stream with."""
    if isinstance(detail, dict):
        message = str(detail.get("message") or detail)
        code = detail.get("code")
        status = code if isinstance(code, int) else 429 if code == "rate_limit_exceeded" else 502
        return UpstreamError(message, status=status, upstream_body=detail)
    return UpstreamError(str(detail), status=502)


#: One event longer than this is a broken upstream, not a model answer.
MAX_EVENT_BYTES = 4 * 1024 * 1024


class DataEvents:
    """The ``data`` of each complete SSE event, split from raw bytes.

    Canonical chunk streams are plain ``data:`` events (plus comments and keep-alives), so
    splitting bytes on blank lines does the general parser's job (``hookproxy.SSEParser``) at
    a fraction of its cost on the path that runs for every chunk; ``orjson`` reads the bytes
    as they are. CR and CRLF line ends are accepted, a CR split from its LF across reads too.
    """

    def __init__(self) -> None:
        self.rest = b""

    def feed(self, raw: bytes) -> list[bytes]:
        data = self.rest + raw if self.rest else raw
        held = b""
        if b"\r" in data:
            if data.endswith(b"\r"):
                data, held = data[:-1], b"\r"
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        events = data.split(b"\n\n")
        self.rest = events.pop() + held
        if len(self.rest) > MAX_EVENT_BYTES:
            raise UpstreamUnreachable(f"the backend sent an SSE event over {MAX_EVENT_BYTES} bytes")
        return [payload for event in events if (payload := _data(event)) is not None]

    def close(self) -> list[bytes]:
        """The last event, when the stream ended without its blank line."""
        rest, self.rest = self.rest.replace(b"\r", b"\n"), b""
        return [payload for event in rest.split(b"\n\n") if (payload := _data(event)) is not None]


def _data(event: bytes) -> bytes | None:
    if event.startswith(b"data: ") and b"\n" not in event:
        return event[6:]  # the usual case: one data line
    lines = [line[6:] if line.startswith(b"data: ") else line[5:]
             for line in event.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(lines) if lines else None


_SPECIAL = re.compile(r'["\\]')
_INPUT_START = re.compile(r'\s*\{\s*"input"\s*:\s*"')


class _InputStream:
    """The string value of ``{"input": "..."}`` decoded as its JSON text arrives in fragments.

    Lets a custom tool's raw input stream as ``custom_tool_call_input.delta`` events. Text is
    released only up to the last complete escape (``\\n``, ``\\u00e9``, a surrogate pair);
    arguments of another shape stream nothing here and are sent whole at the end.
    """

    def __init__(self) -> None:
        self.raw = ""
        self.position = -1
        self.closed = False
        self.sent = ""

    def feed(self, fragment: str) -> str:
        self.raw += fragment
        if self.position < 0:
            match = _INPUT_START.match(self.raw)
            if match is None:
                return ""
            self.position = match.end()
        if self.closed:
            return ""
        end = self._safe_end()
        piece, self.position = self.raw[self.position:end], end
        if not piece:
            return ""
        try:
            text: str = json.loads('"' + piece + '"', strict=False)
        except ValueError:
            self.closed = True
            return ""
        self.sent += text
        return text

    def _safe_end(self) -> int:
        raw, index = self.raw, self.position
        while True:
            match = _SPECIAL.search(raw, index)
            if match is None:
                return len(raw)
            at = match.start()
            if raw[at] == '"':
                self.closed = True
                return at
            if at + 1 >= len(raw):
                return at
            if raw[at + 1] != "u":
                index = at + 2
                continue
            if at + 6 > len(raw):
                return at
            high = raw[at + 2:at + 6].lower()
            if "d800" <= high <= "dbff":
                if at + 12 > len(raw):
                    return at
                index = at + 12
            else:
                index = at + 6
