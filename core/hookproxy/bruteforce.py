"""Throttle clients that keep sending bad proxy keys, in this process or across workers and hosts.

Per client address: ``max_failures`` bad keys within ``window`` seconds block the address for
``block`` seconds; every later block doubles (``factor``) up to ``cap``. A blocked address gets
429 with ``Retry-After`` before its key is even looked at; a good key clears its record.
In memory, O(1) per request. The table holds at most ``max_clients`` addresses: when full,
expired records go first, then the oldest ones, so a scan from many addresses cannot exhaust
memory. With ``state: redis://...`` the proxy uses :class:`SharedBruteForceGuard` instead: the
same rules, counted over every worker and host.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from .errors import RateLimited
from .state import SharedState

log = logging.getLogger("hookproxy.auth")

#: The default bound of the table (addresses); expired records are pruned first.
PRUNE_AT = 10_000


@dataclass(slots=True)
class _Record:
    failures: int = 0
    first_failure: float = 0.0
    blocks: int = 0
    blocked_until: float = 0.0


class BruteForceGuard:
    """Failure counts and blocks per client address; see the module docstring."""

    def __init__(self, max_failures: int = 5, window: float = 900.0, block: float = 30.0,
                 factor: float = 2.0, cap: float = 3600.0, max_clients: int = PRUNE_AT) -> None:
        self.max_clients = max_clients
        self.max_failures = max_failures
        self.window = window
        self.block = block
        self.factor = factor
        self.cap = cap
        self._records: dict[str, _Record] = {}

    @property
    def active(self) -> bool:
        """Whether any address has a record (if not, there is nothing to check or clear)."""
        return bool(self._records)

    def check(self, client: str) -> None:
        """Raise a 429 ``RateLimited`` when ``client`` is blocked now."""
        if not self._records:
            return
        record = self._records.get(client)
        if record is None or not record.blocked_until:
            return
        left = record.blocked_until - time.monotonic()
        if left > 0:
            seconds = max(1, math.ceil(left))
            raise RateLimited(
                f"too many failed authentication attempts from this address; retry after {seconds}s",
                retry_after=seconds,
            )

    def failure(self, client: str) -> None:
        """Count one bad key; block the address when it reached ``max_failures`` in the window."""
        now = time.monotonic()
        record = self._records.get(client)
        if record is None:
            if len(self._records) >= self.max_clients:
                self._prune(now)
            record = self._records[client] = _Record()
        if record.failures == 0 or now - record.first_failure > self.window:
            record.failures, record.first_failure = 0, now
        record.failures += 1
        if record.failures >= self.max_failures:
            duration = min(self.cap, self.block * self.factor**record.blocks)
            record.blocks += 1
            record.blocked_until = now + duration
            record.failures = 0
            log.warning("blocking %s for %gs after %d failed authentication attempts",
                        client, duration, self.max_failures)

    def success(self, client: str) -> None:
        """A good key: forget the address's failures and block level."""
        if self._records:
            self._records.pop(client, None)

    def _prune(self, now: float) -> None:
        stale = [
            client for client, record in self._records.items()
            if record.blocked_until <= now and now - record.first_failure > self.window
        ]
        for client in stale:
            del self._records[client]
        excess = len(self._records) - self.max_clients + max(1, self.max_clients // 10)
        if excess > 0:  # still full of live records: forget the oldest tenth
            for client in list(self._records)[:excess]:
                del self._records[client]


class SharedBruteForceGuard:
    """The same throttle kept in the proxy's shared state (``state: redis://...``).

    The count is the sum over every worker and host, and a block holds everywhere. Good keys
    never reach it; a bad key's path reads the local copy of the blocks, then the authoritative
    block (so an address blocked on another host is refused before the block's message arrived
    here) and counts the failure in a shared counter.
    """

    def __init__(self, state: SharedState, max_failures: int = 5, window: float = 900.0, block: float = 30.0,
                 factor: float = 2.0, cap: float = 3600.0) -> None:
        self.max_failures = max_failures
        self.window = window
        self.block = block
        self.factor = factor
        self.cap = cap
        #: address -> block level, expiring with the block (mirrored into every process)
        self._blocks = state.table("auth-blocks")
        #: counters "f:<address>" (failures in the window) and "l:<address>" (blocks so far)
        self._counts = state.table("auth-counts")

    def check(self, client: str) -> None:
        """Raise a 429 ``RateLimited`` when ``client`` is blocked (local copy, no I/O)."""
        left = self._blocks.seconds_left(client) if self._blocks else 0.0
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
        await self._blocks.get(client)  # the authoritative block, before its message arrives
        self.check(client)
        failures = await self._counts.incr("f:" + client, ttl=self.window)
        if failures < self.max_failures:
            return
        await self._counts.reset("f:" + client)
        level = await self._counts.incr("l:" + client, ttl=self.window + self.cap)
        duration = min(self.cap, self.block * self.factor ** (level - 1))
        await self._blocks.set(client, level, ttl=duration)
        log.warning("blocking %s for %gs after %d failed authentication attempts", client, duration,
                    self.max_failures)
