"""Server-sent events: parse upstream bytes into whole events, and encode events.

Upstream reads split events (and multi-byte UTF-8 characters) anywhere. The parser decodes
incrementally and keeps a carry-over buffer, so a consumer only ever sees complete events and
intact CJK text. Only streams that a plugin transforms are parsed; the default relay forwards
bytes untouched.
"""

from __future__ import annotations

import codecs
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from .errors import UpstreamError

#: One event larger than this is a broken upstream, not a model answer.
MAX_EVENT_CHARS = 4 * 1024 * 1024


class EventTooLarge(UpstreamError, ValueError):
    """An upstream SSE line over :data:`MAX_EVENT_CHARS`: a broken upstream, answered with a 502
    naming the backend (a ``ValueError`` too, for callers written before it existed)."""

    code = "upstream_event_too_large"
    fail_over_at_once = True

    def __init__(self, backend: str) -> None:
        who = f"backend {backend!r}" if backend else "the upstream"
        super().__init__(f"{who} sent an SSE line longer than {MAX_EVENT_CHARS} characters", status=502,
                         backend=backend or None)


@dataclass
class SSEEvent:
    """One event. ``data`` joins its ``data:`` lines with newlines; comments are kept apart."""

    data: str | None = None
    event: str | None = None
    id: str | None = None
    comments: list[str] = field(default_factory=list)

    @property
    def is_done(self) -> bool:
        return self.data is not None and self.data.strip() == "[DONE]"

    def json(self) -> Any:
        """The parsed ``data`` (raises ``ValueError`` when it is not JSON)."""
        if self.data is None:
            raise ValueError("event has no data")
        return orjson.loads(self.data)


class SSEParser:
    """Incremental parser: ``feed(bytes)`` returns the events completed by those bytes.

    ``backend`` names the source in the :class:`EventTooLarge` error of an overlong line.
    """

    def __init__(self, backend: str = "") -> None:
        self.backend = backend
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._current = SSEEvent()
        self._has_fields = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        text = self._buffer + self._decoder.decode(chunk)
        events: list[SSEEvent] = []
        start = 0
        while True:
            end = _line_end(text, start)
            if end is None:
                break
            line_end, next_start = end
            self._line(text[start:line_end], events)
            start = next_start
        self._buffer = text[start:]
        if len(self._buffer) > MAX_EVENT_CHARS:
            raise EventTooLarge(self.backend)
        return events

    def close(self) -> list[SSEEvent]:
        """Flush at end of stream: a final event without its blank line still counts."""
        events: list[SSEEvent] = []
        tail = self._buffer + self._decoder.decode(b"", final=True)
        self._buffer = ""
        if tail:
            self._line(tail, events)
        self._line("", events)
        return events

    def _line(self, line: str, events: list[SSEEvent]) -> None:
        if not line:
            if self._has_fields:
                events.append(self._current)
            self._current, self._has_fields = SSEEvent(), False
            return
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        self._has_fields = True
        if name == "":
            self._current.comments.append(value)
        elif name == "data":
            current = self._current.data
            self._current.data = value if current is None else current + "\n" + value
        elif name == "event":
            self._current.event = value
        elif name == "id":
            self._current.id = value


def _line_end(text: str, start: int) -> tuple[int, int] | None:
    """Where the line starting at ``start`` ends (CR, LF or CRLF), and where the next begins."""
    lf = text.find("\n", start)
    cr = text.find("\r", start, lf if lf >= 0 else len(text))
    if cr >= 0:
        if cr + 1 == len(text):
            return None  # a lone CR at the end may be the first half of CRLF
        return cr, cr + 2 if text[cr + 1] == "\n" else cr + 1
    if lf >= 0:
        return lf, lf + 1
    return None


def encode_event(data: Any, *, event: str | None = None) -> bytes:
    """Encode one ``data:`` event; ``data`` may be a str (sent as is) or JSON-able."""
    payload = data if isinstance(data, str) else orjson.dumps(data).decode()
    head = f"event: {event}\n" if event else ""
    lines = "".join(f"data: {line}\n" for line in payload.split("\n"))
    return (head + lines + "\n").encode()


def encode_comment(text: str) -> bytes:
    """An SSE comment line (``: keepalive``), which clients ignore but which keeps sockets warm."""
    return f": {text}\n\n".encode()


DONE = b"data: [DONE]\n\n"


class UpstreamStream:
    """A streamed upstream answer, offered raw or as parsed events (each only once)."""

    def __init__(self, chunks: AsyncIterator[bytes], backend: str = "") -> None:
        self._chunks = chunks
        self.backend = backend

    def raw(self) -> AsyncIterator[bytes]:
        return self._chunks

    async def events(self) -> AsyncIterator[SSEEvent]:
        parser = SSEParser(self.backend)
        async for chunk in self._chunks:
            for event in parser.feed(chunk):
                yield event
        for event in parser.close():
            yield event
