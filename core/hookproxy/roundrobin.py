"""Where each round-robin route starts next, agreed between workers and hosts.

Why not a shared counter in Redis: that is a round-trip on every request of the route. Instead
each process takes the next position from its local counter and announces it in the background
(coalesced: one message in flight per route); a process that hears a higher position jumps to
it. Requests alternate across processes as long as announcements travel faster than requests
arrive, and concurrent requests at worst start at the same element: balance, not a lock.
Without shared state nothing is announced: a local counter, as before.
"""

from __future__ import annotations

from typing import Any

from .state import SharedState

CHANNEL = "round-robin"


class RoundRobin:
    """Next start position per named route; see the module docstring."""

    def __init__(self, state: SharedState) -> None:
        self._state = state
        self._next: dict[str, int] = {}
        self._pending: set[str] = set()
        if state.shared:
            state.subscribe(CHANNEL, self._heard)

    def start(self, route: str, size: int) -> int:
        """The index of the element route ``route`` (of ``size`` elements) starts with now."""
        position = self._next.get(route, 0)
        self._next[route] = position + 1
        if self._state.shared and route not in self._pending:
            self._pending.add(route)
            self._state.run_soon(self._announce(route))
        return position % size

    async def _announce(self, route: str) -> None:
        self._pending.discard(route)
        await self._state.publish(CHANNEL, {"route": route, "next": self._next[route]})

    def _heard(self, message: Any) -> None:
        if not isinstance(message, dict) or not isinstance(message.get("next"), int):
            return
        route = str(message.get("route"))
        if message["next"] > self._next.get(route, 0):
            self._next[route] = message["next"]
