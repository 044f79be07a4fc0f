"""End streams whose upstream went quiet (idle timeout) or that run too long (lifetime cap).

Why not ``asyncio.timeout`` around every read: that schedules and cancels a timer per chunk.
Here one timer per stream wakes up at the earliest moment a limit could be reached, looks at
when the current read began, and reschedules itself; a chunk only costs a clock read and two
attribute stores. When a limit is hit the guard closes the upstream response, which ends the
pending read; the relay then raises :class:`~hookproxy.errors.UpstreamTimeout` and the client
gets one error event.

Time the client spends not reading (backpressure) is not upstream idleness, so the idle clock
only runs while a read is pending.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

#: ``fired`` of a stream ended because the proxy is shutting down.
SHUTDOWN_REASON = "the proxy is shutting down (shutdown_grace_period is over)"


class StreamGuard:
    """The idle/lifetime watchdog of one upstream stream; ``fired`` says which limit was hit."""

    __slots__ = ("_loop", "_idle", "_deadline", "_close", "_timer", "_closing", "reading", "since", "fired",
                 "__weakref__")

    def __init__(self, idle: float, lifetime: float, close: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._loop = asyncio.get_running_loop()
        now = self._loop.time()
        self._idle = idle
        self._deadline = now + lifetime
        self._close = close
        self._closing: asyncio.Task[None] | None = None
        self.reading = True
        self.since = now
        self.fired: str | None = None
        self._timer = self._loop.call_at(min(now + idle, self._deadline), self._check)

    def _check(self) -> None:
        now = self._loop.time()
        if now >= self._deadline:
            self._fire("the stream reached its lifetime cap (stream_max_lifetime)")
            return
        if self.reading and now - self.since >= self._idle:
            self._fire(f"no data from upstream for {self._idle:g}s (stream_idle_timeout)")
            return
        due = self.since + self._idle if self.reading else now + self._idle
        self._timer = self._loop.call_at(min(max(due, now), self._deadline), self._check)

    def _fire(self, reason: str) -> None:
        self.fired = reason
        self._closing = self._loop.create_task(self._close())

    def stop(self, reason: str) -> None:
        """End the stream now (the proxy is shutting down)."""
        if self.fired is None:
            self._timer.cancel()
            self._fire(reason)

    def read_started(self) -> None:
        self.reading = True
        self.since = self._loop.time()

    def cancel(self) -> None:
        self._timer.cancel()
