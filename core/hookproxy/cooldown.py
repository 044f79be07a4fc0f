"""Per-backend cooldowns learned from rate limits, shared by every worker and host.

Why: a backend that answered 429/503/529 with ``Retry-After`` told us when to come back. The
attempt loop (:mod:`hookproxy.failover`) consults :meth:`Cooldowns.remaining` before each
attempt, so no request (in this process or, with ``state: redis://...``, any other) calls that
backend before then: it fails over to the next candidate, or waits when it is the only one.

Hot path: when nothing is cooling down anywhere, :meth:`remaining` is one truth test of the
local table; learning happens on the error path only.
"""

from __future__ import annotations

import logging

from .errors import UpstreamError
from .state import SharedState

log = logging.getLogger("hookproxy.failover")

#: Statuses whose Retry-After starts a cooldown (529: Anthropic-style "overloaded").
COOLDOWN_STATUSES = frozenset({429, 503, 529})
#: A Retry-After longer than this is capped (a broken upstream must not park a backend for days).
MAX_COOLDOWN = 3600.0
TABLE = "cooldown"


class Cooldowns:
    """Backend id -> seconds it must not be called, in the shared state's table ``cooldown``."""

    def __init__(self, state: SharedState, *, enabled: bool = True) -> None:
        self._table = state.table(TABLE)
        self.enabled = enabled  # failure_handling.learn_cooldowns

    def __bool__(self) -> bool:
        """Whether any backend may be cooling down (false: nothing to check)."""
        return bool(self._table)

    def remaining(self, backend_id: str) -> float:
        """Seconds ``backend_id`` is still cooling down (0.0 when it may be called)."""
        table = self._table
        if not table:
            return 0.0
        return table.seconds_left(backend_id)

    def reason(self, backend_id: str) -> str:
        value = self._table.peek(backend_id)
        return str(value.get("reason")) if isinstance(value, dict) else "a rate limit"

    async def learn(self, backend_id: str, error: UpstreamError) -> None:
        """Start (or extend) a cooldown from an upstream answer that carries ``Retry-After``."""
        if error.status not in COOLDOWN_STATUSES or not error.retry_after or not self.enabled:
            return
        seconds = min(error.retry_after, MAX_COOLDOWN)
        if seconds <= self.remaining(backend_id):
            return
        reason = f"HTTP {error.status} with Retry-After {error.retry_after:g}s"
        log.info("cooldown: %s is not called for %.1fs (%s)", backend_id, seconds, reason)
        await self._table.set(backend_id, {"status": error.status, "reason": reason}, ttl=seconds)
