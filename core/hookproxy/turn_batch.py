"""Writes of one event-loop turn after its first, held and made together at the turn's end.

Why: under load the proxy finishes many answers (and sends many upstream requests) in one turn
of the event loop. Each ``write()`` wakes the process at the other end if it sleeps, and a
process that waits on many of these sockets (a load generator, an agent running requests in
parallel, an upstream server) is woken once per write. On a virtual machine each wake-up of a
process on another core is an interrupt that costs the writer microseconds of system time.
Written back to back, the writes of one turn wake it once or twice. The first write of a turn
is never held, so a lone request waits for nothing; a held one is made at the start of the next
turn, before the loop sleeps. The HTTP server (whole answers) and the upstream client (requests)
each keep one :class:`TurnBatch`.
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class Held(Protocol):
    def uncork(self) -> None:
        """Make the write that was held (it may find its socket closed meanwhile)."""


class TurnBatch:
    """The writers holding a write until the end of the current turn of the event loop."""

    __slots__ = ("_loop", "_started", "_held")

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop  # found on first use when the batch is made before the loop runs
        self._started = False
        self._held: list[Held] = []

    def holds(self, writer: Held) -> bool:
        """Whether ``writer`` is to hold its write: False for the first write of this turn (make
        it now), True for the others (``writer.uncork()`` is called when the turn is over)."""
        if self._started:
            self._held.append(writer)
            return True
        self._started = True
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        loop.call_soon(self._flush)
        return False

    def _flush(self) -> None:
        self._started = False
        held, self._held = self._held, []
        for writer in held:
            writer.uncork()
