"""The response store behind ``previous_response_id``: what a later request may continue.

hookproxy is stateless by default; with ``responses_store`` on, each finished response's whole
conversation (its input items, those of the response it continued, and its output items) is
kept under its id. Items are kept in the Responses shape, not the canonical one, so a later
request translates them with its own tools, exactly like a client that resends its history.

:class:`ResponseStore` is the small interface a shared store (across processes) implements;
:class:`MemoryStore` is the in-process one, bounded by entry count and age; :class:`SharedStore`
keeps responses in the proxy's shared state (``state: redis://...``), so a conversation started
through one worker or host continues through any other.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from hookproxy import SharedState


class ResponseStore(Protocol):
    async def load(self, response_id: str) -> list[dict[str, Any]] | None:
        """The conversation items of a stored response, or ``None`` if unknown or expired."""

    async def save(self, response_id: str, items: list[dict[str, Any]]) -> None:
        """Keep the conversation items of a finished response."""


class MemoryStore:
    """In-process store: at most ``max_entries`` responses, each for ``max_age`` seconds."""

    def __init__(self, max_entries: int, max_age: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self.max_age = max_age
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, list[dict[str, Any]]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def load(self, response_id: str) -> list[dict[str, Any]] | None:
        entry = self._entries.get(response_id)
        if entry is None:
            return None
        saved_at, items = entry
        if self._clock() - saved_at > self.max_age:
            del self._entries[response_id]
            return None
        return items

    async def save(self, response_id: str, items: list[dict[str, Any]]) -> None:
        now = self._clock()
        self._entries[response_id] = (now, items)
        self._entries.move_to_end(response_id)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        while self._entries:
            oldest_id, (saved_at, _) = next(iter(self._entries.items()))
            if now - saved_at <= self.max_age:
                break
            del self._entries[oldest_id]


class SharedStore:
    """Responses in the shared state for ``max_age`` seconds (Redis expires them; no count bound)."""

    def __init__(self, state: SharedState, max_age: float) -> None:
        self._state = state
        self.max_age = max_age

    async def load(self, response_id: str) -> list[dict[str, Any]] | None:
        items = await self._state.fetch("responses:" + response_id)
        return items if isinstance(items, list) else None

    async def save(self, response_id: str, items: list[dict[str, Any]]) -> None:
        await self._state.put("responses:" + response_id, items, ttl=self.max_age)
