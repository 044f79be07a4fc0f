"""One access-log line per client request, written to standard error in batches.

``access_log: text`` (or ``--access-log text``) writes ``key=value`` pairs, ``json`` one JSON
object per line (JSON Lines, ready for a log shipper); ``off`` (the default) writes nothing. The
fields are those of :class:`~hookproxy.observe.RequestEnded`, after a UTC timestamp; the proxy
key appears only as its id.

Why not the ``logging`` module: a log record per request (record, formatter, handler lock, one
write and flush each) cost about 20 µs, several percent of the proxy's whole per-request budget.
Lines are formatted at once and written together, at most every quarter second or 256 lines,
and at exit; a line is never lost to a crash of the request, only to a crash of the process.
"""

from __future__ import annotations

import asyncio
import atexit
import sys
import time
import weakref
from typing import Any, TextIO

import orjson

from hookproxy import Proxy, hookimpl
from hookproxy.observe import RequestEnded

FLUSH_SECONDS = 0.25
FLUSH_LINES = 256


def fields(event: RequestEnded) -> dict[str, Any]:
    usage = event.usage
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(event.started + event.duration))
        + f".{int((event.started + event.duration) % 1 * 1000):03d}Z",
        "request_id": event.request_id,
        "key_id": event.key_id,
        "frontend": event.frontend,
        "path": event.path,
        "status": event.status,
        "backend": event.backend or None,
        "model": event.model or None,
        "stream": event.stream,
        "ttfb_ms": None if event.ttfb is None else round(event.ttfb * 1000, 2),
        "duration_ms": round(event.duration * 1000, 2),
        "overhead_ms": round(event.overhead * 1000, 2),
        "tokens_in": usage.input if usage else None,
        "tokens_out": usage.output if usage else None,
        "tokens_cached": usage.cached if usage else None,
        "tokens_reasoning": usage.reasoning if usage else None,
        "attempts": event.attempts,
        "failovers": event.failovers,
        "error": event.error,
    }


def format_line(event: RequestEnded, style: str) -> str:
    values = fields(event)
    if style == "json":
        return orjson.dumps(values).decode()
    return "access " + " ".join(f"{key}={'-' if value is None else value}" for key, value in values.items())


class AccessLog:
    """Buffered lines for one stream, flushed by a timer, by size, and at exit."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self.lines: list[str] = []

    def add(self, line: str) -> None:
        self.lines.append(line)
        if len(self.lines) >= FLUSH_LINES:
            self.flush()
        elif len(self.lines) == 1:
            try:
                asyncio.get_running_loop().call_later(FLUSH_SECONDS, self.flush)
            except RuntimeError:  # no loop (a synchronous caller): write now
                self.flush()

    def flush(self) -> None:
        if not self.lines:
            return
        text = "\n".join(self.lines) + "\n"
        self.lines.clear()
        stream = self.stream or sys.stderr
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):  # a closed stream at exit: nothing to do
            pass


_logs: weakref.WeakKeyDictionary[Proxy, AccessLog] = weakref.WeakKeyDictionary()


def _flush_all() -> None:
    for access_log in list(_logs.values()):
        access_log.flush()


atexit.register(_flush_all)


@hookimpl
def request_ended(event: RequestEnded, proxy: Proxy) -> None:
    style = proxy.settings.access_log
    if style == "off":
        return
    access_log = _logs.get(proxy)
    if access_log is None:
        access_log = _logs[proxy] = AccessLog()
    access_log.add(format_line(event, style))
