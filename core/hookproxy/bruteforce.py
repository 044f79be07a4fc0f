"""Throttle clients that keep sending bad proxy keys, counted across workers and hosts.

Per client address: ``max_failures`` bad keys within ``window`` seconds block the address for
``block`` seconds; every later block doubles (``factor``) up to ``cap``. A blocked address gets
429 with ``Retry-After`` before its key is even looked at; a good key clears its failures.

The records live in the proxy's shared state (:mod:`hookproxy.state`), so with
``state: redis://...`` the count is the sum over every process and a block holds everywhere.
Good traffic never waits on it: :meth:`BruteForceGuard.check` reads the local copy of the
blocks (empty tables: one truth test), and only the bad-key path (:meth:`failure`) writes and
reads the shared counters, so a client blocked on another host is refused on its next bad key
even before the block's message arrived here.
"""

from __future__ import annotations

import logging
import math

from .errors import RateLimited
from .state import InProcessState, SharedState

log = logging.getLogger("hookproxy.auth")


class BruteForceGuard:
    """Failure counts and blocks per client address; see the module docstring."""

    def __init__(self, max_failures: int = 5, window: float = 900.0, block: float = 30.0,
                 factor: float = 2.0, cap: float = 3600.0, *, state: SharedState | None = None) -> None:
        self.max_failures = max_failures
        self.window = window
        self.block = block
        self.factor = factor
        self.cap = cap
        self._state = state if state is not None else InProcessState()
        #: address -> block level, expiring with the block (mirrored: read on every request)
        self._blocks = self._state.table("auth-blocks")
        #: address -> 1 while it has failures or a block level to forget on a good key (mirrored)
        self._failing = self._state.table("auth-failing")
        #: counters "f:<address>" (failures in the window) and "l:<address>" (blocks so far)
        self._counts = self._state.table("auth-counts")

    @property
    def active(self) -> bool:
        """Whether any address has a record (if not, there is nothing to check or clear)."""
        return bool(self._blocks) or bool(self._failing)

    def check(self, client: str) -> None:
        """Raise a 429 ``RateLimited`` when ``client`` is blocked now (local copy, no I/O)."""
        if self._blocks:
            self._raise_if_blocked(client)

    def _raise_if_blocked(self, client: str) -> None:
        left = self._blocks.seconds_left(client)
        if left > 0:
            seconds = max(1, math.ceil(left))
            raise RateLimited(
                f"too many failed authentication attempts from this address; retry after {seconds}s",
                retry_after=seconds,
            )

    async def failure(self, client: str) -> None:
        """Count one bad key; block the address when it reached ``max_failures`` in the window.

        Raises ``RateLimited`` when another process already blocked the address.
        """
        if self._state.shared:
            await self._blocks.get(client)  # the authoritative block, before the message arrives
            self._raise_if_blocked(client)
        failures = await self._counts.incr("f:" + client, ttl=self.window)
        if failures < self.max_failures:
            if self._failing.peek(client) is None:
                await self._failing.set(client, 1, ttl=self.window + self.cap)
            return
        await self._counts.reset("f:" + client)
        level = await self._counts.incr("l:" + client, ttl=self.window + self.cap)
        duration = min(self.cap, self.block * self.factor ** (level - 1))
        await self._blocks.set(client, level, ttl=duration)
        await self._failing.set(client, 1, ttl=self.window + self.cap)
        log.warning("blocking %s for %gs after %d failed authentication attempts", client, duration,
                    self.max_failures)

    def success(self, client: str) -> None:
        """A good key: forget the address's failures and block level (in the background)."""
        if self._failing and self._failing.peek(client) is not None:
            self._failing.apply(client, None, 0.0)
            self._state.run_soon(self._forget(client))

    async def _forget(self, client: str) -> None:
        await self._failing.delete(client)
        await self._counts.reset("f:" + client)
        await self._counts.reset("l:" + client)
