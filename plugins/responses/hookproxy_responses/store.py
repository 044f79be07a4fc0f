"""The response store behind ``previous_response_id``: what a later request may continue.

hookproxy is stateless by default; with ``responses_store`` on, each finished response's whole
conversation (its input items, those of the response it continued, and its output items) is
kept under its id, with the response object the client received (``GET /v1/responses/{id}``
returns it, ``DELETE`` forgets both). Items are kept in the Responses shape, not the canonical
one, so a later request translates them with its own tools, exactly like a client that resends
its history.

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

    async def load_response(self, response_id: str) -> dict[str, Any] | None:
        """The response object as the client last received it (``GET /v1/responses/{id}``)."""

    async def save(self, response_id: str, items: list[dict[str, Any]], response: dict[str, Any] | None = None) -> None:
        """Keep the conversation items of a finished response, and the response object itself."""

    async def delete(self, response_id: str) -> bool:
        """Forget a response; whether it was there."""


class MemoryStore:
    """In-process store: at most ``max_entries`` responses, each for ``max_age`` seconds."""

    def __init__(self, max_entries: int, max_age: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self.max_age = max_age
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, list[dict[str, Any]], dict[str, Any] | None]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def _entry(self, response_id: str) -> tuple[float, list[dict[str, Any]], dict[str, Any] | None] | None:
        entry = self._entries.get(response_id)
        if entry is not None and self._clock() - entry[0] > self.max_age:
            del self._entries[response_id]
            return None
        return entry

    async def load(self, response_id: str) -> list[dict[str, Any]] | None:
        entry = self._entry(response_id)
        return None if entry is None else entry[1]

    async def load_response(self, response_id: str) -> dict[str, Any] | None:
        entry = self._entry(response_id)
        return None if entry is None else entry[2]

    async def save(self, response_id: str, items: list[dict[str, Any]], response: dict[str, Any] | None = None) -> None:
        now = self._clock()
        self._entries[response_id] = (now, items, response)
        self._entries.move_to_end(response_id)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        while self._entries:
            oldest_id, (saved_at, _, _) = next(iter(self._entries.items()))
            if now - saved_at <= self.max_age:
                break
            del self._entries[oldest_id]

    async def delete(self, response_id: str) -> bool:
        return self._entry(response_id) is not None and self._entries.pop(response_id, None) is not None


class SharedStore:
    """Responses in the shared state for ``max_age`` seconds (Redis expires them; no count bound)."""

    def __init__(self, state: SharedState, max_age: float) -> None:
        self._state = state
        self.max_age = max_age

    async def _fetch(self, response_id: str) -> dict[str, Any] | None:
        value = await self._state.fetch("responses:" + response_id)
        if isinstance(value, list):  # kept by an older hookproxy: the items alone
            return {"items": value, "response": None}
        return value if isinstance(value, dict) and isinstance(value.get("items"), list) else None

    async def load(self, response_id: str) -> list[dict[str, Any]] | None:
        entry = await self._fetch(response_id)
        return None if entry is None else entry["items"]

    async def load_response(self, response_id: str) -> dict[str, Any] | None:
        entry = await self._fetch(response_id)
        response = None if entry is None else entry.get("response")
        return response if isinstance(response, dict) else None

    async def save(self, response_id: str, items: list[dict[str, Any]], response: dict[str, Any] | None = None) -> None:
        await self._state.put("responses:" + response_id, {"items": items, "response": response}, ttl=self.max_age)

    async def delete(self, response_id: str) -> bool:
        if await self._fetch(response_id) is None:
            return False
        await self._state.put("responses:" + response_id, None, ttl=1)  # the shared state's way to forget
        return True
