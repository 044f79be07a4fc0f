"""Token refresh across hosts: one refresh per refresh token, and its result handed to the others.

Why: hosts that share an account each have their own copy of ``oauth_creds.json``, so the CLI's
lock file cannot keep them from refreshing the same rotating refresh token twice (the second
refresh kills the account for everyone). Through the proxy's shared state (``proxy.state``):

* :meth:`TokenHandoff.lock` is a lock with an expiry named after the refresh token's
  fingerprint (a SHA-256 prefix, never the token), held around the refresh in addition to the
  CLI-compatible file lock.
* :meth:`TokenHandoff.publish` stores the new credentials under the old refresh token's
  fingerprint; the shared table's pub/sub spreads it, so :meth:`TokenHandoff.newer` (a local
  lookup, one truth test while nothing was refreshed) lets every host stop using the old token
  on its next request, and a host that waited for the lock finds the result instead of
  refreshing again.

Without ``state: redis://...`` this is the same within one process, where it changes nothing.
"""

from __future__ import annotations

import hashlib
from contextlib import AbstractAsyncContextManager
from typing import Any

from hookproxy import SharedState

from .credentials import Credentials

TABLE = "qwen-oauth-tokens"
#: How long a handoff is kept: a host idle for less than this still follows the rotation chain.
HANDOFF_TTL = 24 * 3600.0
#: Token fields a handoff carries (the receiving host keeps every other field of its own file).
FIELDS = ("access_token", "refresh_token", "token_type", "expiry_date", "resource_url")


def fingerprint(refresh_token: str) -> str:
    """A short, one-way name for a refresh token (lock and table keys; never the token)."""
    return hashlib.sha256(refresh_token.encode()).hexdigest()[:32]


class TokenHandoff:
    """The shared side of one credentials file's refresh; see the module docstring."""

    def __init__(self, state: SharedState) -> None:
        self._state = state
        self._table = state.table(TABLE)
        self._known: tuple[str, str] = ("", "")  # (refresh token, its fingerprint): hashed once

    def _fingerprint(self, refresh_token: str) -> str:
        if self._known[0] != refresh_token:
            self._known = (refresh_token, fingerprint(refresh_token))
        return self._known[1]

    def newer(self, current: Credentials) -> dict[str, Any] | None:
        """New token fields another host (or request) got for ``current``'s refresh token (local)."""
        if not self._table:
            return None
        found = self._table.peek(self._fingerprint(current.refresh_token))
        return found if isinstance(found, dict) else None

    async def newer_shared(self, current: Credentials) -> dict[str, Any] | None:
        """Like :meth:`newer`, asking the shared store itself (after waiting for the lock)."""
        found = await self._table.get(self._fingerprint(current.refresh_token))
        return found if isinstance(found, dict) else None

    def lock(self, current: Credentials, *, hold: float) -> AbstractAsyncContextManager[bool]:
        """The cross-host refresh lock for ``current``'s refresh token (expires after ``hold`` s)."""
        return self._state.lock(f"qwen-oauth-refresh:{self._fingerprint(current.refresh_token)}",
                                ttl=hold, wait=hold)

    async def publish(self, old: Credentials, new: Credentials) -> None:
        fields = {name: new.raw[name] for name in FIELDS if name in new.raw}
        await self._table.set(self._fingerprint(old.refresh_token), fields, ttl=HANDOFF_TTL)
