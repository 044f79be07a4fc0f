"""Valid access tokens on demand: cached credentials, one refresh at a time, safe beside the CLI.

Why it looks like this (it follows what the official Qwen client does):

* The file is re-read when its mtime changes (checked at most every ``check_interval`` seconds,
  or always when a caller asks), so a token the ``qwen`` CLI refreshed is used without restart.
* One refresh in flight per process: concurrent callers queue on an ``asyncio.Lock`` and, once
  inside, find the fresh token the first one stored.
* Across processes, ``oauth_creds.lock`` is held around the refresh, and the file is re-read
  after taking it: if another process already refreshed, its token is used and we do not spend
  (and rotate) the refresh token again.
* A dead refresh token (400/401) is reported as "run `qwen auth`" and remembered until the file
  changes; the file is never deleted or rewritten on failure.
* Across hosts (each with its own copy of the file), :mod:`.handoff` adds a shared lock around
  the refresh and hands the new token to the other hosts, which adopt it (and save it to their
  own file) instead of refreshing the already rotated token again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from hookproxy import AuthenticationFailed, ProxyError, SharedState
from hookproxy.state import InProcessState

from . import credentials as creds_file
from . import lockfile
from .credentials import Credentials, Snapshot
from .handoff import TokenHandoff

log = logging.getLogger("hookproxy.qwen_oauth")

CLIENT_ID = "f0304373b74a44d2b584a3fb70ca9e56"
#: Seconds between mtime checks of a cached, valid token (the official CACHE_CHECK_INTERVAL_MS).
CHECK_INTERVAL = 5.0


class TokenRefreshFailed(ProxyError):
    """The token endpoint could not give a new token and the old one has expired (502, no retry)."""

    status = 502
    type = "upstream_error"
    code = "token_refresh_failed"


class _DeadRefreshToken(Exception):
    """The token endpoint answered 400/401: only `qwen auth` can help."""


class _RefreshUnavailable(Exception):
    """The token endpoint could not be used now (network, 5xx, bad reply); may work later."""


@dataclass
class TokenState:
    """What /health shows: never a token."""

    usable: bool
    reason: str | None
    expires_in_seconds: float | None


class TokenManager:
    """Credentials of one file, refreshed through one token endpoint."""

    def __init__(
        self,
        path: Path,
        token_url: str,
        client: Callable[[], httpx.AsyncClient],
        *,
        timeout: float = 30.0,
        check_interval: float = CHECK_INTERVAL,
        lock_rules: lockfile.LockRules = lockfile.DEFAULT_RULES,
        state: SharedState | None = None,
    ) -> None:
        self.path = path
        self.lock_path = lockfile.lock_path_for(path)
        self.token_url = token_url
        self.check_interval = check_interval
        self.lock_rules = lock_rules
        self.refresh_count = 0
        self._client = client
        self._timeout = timeout
        self._snapshot: Snapshot | None = None
        self._last_check = 0.0
        self._dead_mtime: int | None = None
        self._dead = False
        self._lock: asyncio.Lock | None = None
        self.handoff = TokenHandoff(state if state is not None else InProcessState())

    # --- reading --------------------------------------------------------------------------

    @property
    def cached(self) -> Credentials | None:
        return self._snapshot.credentials if self._snapshot else None

    def _store(self, snapshot: Snapshot) -> Snapshot:
        if self._dead and snapshot.mtime_ns != self._dead_mtime:
            self._dead = False  # the file changed (e.g. `qwen auth` ran): try again
        if snapshot.credentials is None and snapshot.error:
            if self._snapshot is None or snapshot.error != self._snapshot.error:
                log.warning("%s", snapshot.error)
        self._snapshot = snapshot
        self._last_check = time.monotonic()
        return snapshot

    def peek(self) -> Snapshot:
        """Synchronous look for health: re-reads only when the mtime changed (a tiny local file)."""
        mtime = creds_file.stat_mtime(self.path)
        if self._snapshot is None or mtime != self._snapshot.mtime_ns:
            return self._store(creds_file.read(self.path))
        return self._snapshot

    async def load(self, *, force: bool = False) -> Snapshot:
        """The current file content, re-read in a thread when forced, stale-checked or changed."""
        due = time.monotonic() - self._last_check >= self.check_interval
        snapshot = self._snapshot
        if snapshot is not None and not force and not due and snapshot.credentials is not None:
            return snapshot
        mtime = await asyncio.to_thread(creds_file.stat_mtime, self.path)
        if snapshot is not None and not force and mtime == snapshot.mtime_ns:
            self._last_check = time.monotonic()
            return snapshot
        return self._store(await asyncio.to_thread(creds_file.read, self.path))

    def state(self) -> TokenState:
        snapshot = self.peek()
        if snapshot.credentials is None:
            return TokenState(False, snapshot.error, None)
        left = snapshot.credentials.seconds_left()
        expires_in = None if left is None else round(left, 1)
        if self._dead:
            return TokenState(False, self._reauth_message(), expires_in)
        return TokenState(True, None, expires_in)

    def _reauth_message(self) -> str:
        return (
            f"the Qwen OAuth refresh token in {self.path} was rejected; run `qwen auth` to sign in again "
            "(the file was left unchanged)"
        )

    # --- tokens -----------------------------------------------------------------------------

    async def token(self, *, reload: bool = False, rejected: str | None = None) -> Credentials:
        """A usable token. ``reload`` re-reads the file; ``rejected`` is a token upstream refused."""
        snapshot = await self.load(force=reload or rejected is not None or self._dead)
        current = self._usable(snapshot)
        newer = self.handoff.newer(current)
        if newer is not None and newer.get("access_token") != current.access_token:
            current = await self._adopt(current, newer)
        if not current.is_expired() and current.access_token != rejected:
            return current
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            current = self._usable(self._snapshot)
            if not current.is_expired() and current.access_token != rejected:
                return current  # another caller refreshed while we waited
            return await self._refresh_locked(rejected)

    def _usable(self, snapshot: Snapshot | None) -> Credentials:
        if snapshot is None or snapshot.credentials is None:
            error = snapshot.error if snapshot else f"no credentials read from {self.path}; {creds_file.CREATE_HINT}"
            raise AuthenticationFailed(f"qwen-oauth: {error}")  # the error already says how to fix it
        if self._dead:
            raise AuthenticationFailed(f"qwen-oauth: {self._reauth_message()}")
        return snapshot.credentials

    async def _refresh_locked(self, rejected: str | None) -> Credentials:
        try:
            lock_id = await asyncio.to_thread(lockfile.acquire, self.lock_path, self.lock_rules)
        except lockfile.LockTimeout as exc:
            return self._fallback(self._usable(self._snapshot), str(exc))
        try:
            current = self._usable(self._store(await asyncio.to_thread(creds_file.read, self.path)))
            if not current.is_expired() and current.access_token != rejected:
                log.info("qwen-oauth: using the token another process refreshed in %s", self.path)
                return current
            async with self.handoff.lock(current, hold=self._timeout + 5) as held:
                newer = await self.handoff.newer_shared(current)
                if newer is not None and newer.get("access_token") != current.access_token:
                    return await self._adopt(current, newer, locked=True)
                if not held:
                    return self._fallback(current, "another host held the shared refresh lock too long")
                new = await self._refresh(current)
                if new.access_token != current.access_token:
                    await self.handoff.publish(current, new)
                return new
        finally:
            await asyncio.to_thread(lockfile.release, self.lock_path, lock_id)

    async def _adopt(self, current: Credentials, fields: dict[str, Any], *, locked: bool = False) -> Credentials:
        """Use (and save to this host's file) the token another host refreshed from ``current``."""
        data = {**current.raw, **fields}
        new = creds_file.parse(data, self.path)
        mtime = await asyncio.to_thread(_save_if_unchanged, self.path, self.lock_path, self.lock_rules,
                                        current.refresh_token, data, locked)
        self._snapshot = Snapshot(new, None, mtime if mtime is not None else
                                  (self._snapshot.mtime_ns if self._snapshot else None))
        self._last_check = time.monotonic()
        log.info("qwen-oauth: using the token another host refreshed; saved it to %s", self.path)
        return new

    async def _refresh(self, current: Credentials) -> Credentials:
        try:
            reply = await self._post(current.refresh_token)
        except _DeadRefreshToken:
            self._dead = True
            self._dead_mtime = self._snapshot.mtime_ns if self._snapshot else None
            raise AuthenticationFailed(f"qwen-oauth: {self._reauth_message()}") from None
        except _RefreshUnavailable as exc:
            return self._fallback(current, str(exc))
        data = creds_file.refreshed(current, reply)
        new = creds_file.parse(data, self.path)
        try:
            mtime: int | None = await asyncio.to_thread(creds_file.write_atomic, self.path, data)
        except OSError as exc:
            log.error("qwen-oauth: refreshed the token but could not save %s (%s); using it from memory",
                      self.path, type(exc).__name__)
            mtime = self._snapshot.mtime_ns if self._snapshot else None
        self._snapshot = Snapshot(new, None, mtime)
        self._last_check = time.monotonic()
        log.info("qwen-oauth: refreshed the access token and saved %s", self.path)
        return new

    def _fallback(self, current: Credentials, why: str) -> Credentials:
        """Use the old token while it is not really expired; else a clear 502.

        The 502 is not an upstream error: no chat request was sent, and retrying at once would
        only call the token endpoint again, so the core answers it without a retry.
        """
        if not current.is_past_expiry():
            log.warning("qwen-oauth: token refresh failed (%s); the current token is still valid, using it", why)
            return current
        message = (f"qwen-oauth: could not refresh the access token at {self.token_url} (extra.token_url): {why}; "
                   f"credentials file {self.path} left unchanged")
        log.warning("%s; the chat request was not sent", message)
        raise TokenRefreshFailed(message)

    async def _post(self, refresh_token: str) -> dict[str, Any]:
        self.refresh_count += 1
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": CLIENT_ID}
        try:
            response = await self._client().post(
                self.token_url, data=form, headers={"accept": "application/json"}, timeout=self._timeout
            )
        except httpx.HTTPError as exc:
            raise _RefreshUnavailable(f"token endpoint unreachable ({type(exc).__name__})") from None
        if response.status_code in (400, 401):
            raise _DeadRefreshToken()
        if response.status_code >= 300:
            raise _RefreshUnavailable(f"token endpoint answered HTTP {response.status_code}")
        try:
            reply = response.json()
        except ValueError:
            raise _RefreshUnavailable("token endpoint returned invalid JSON") from None
        return _check_reply(reply)


def _check_reply(reply: Any) -> dict[str, Any]:
    """A success reply needs a non-empty ``access_token`` and a numeric ``expires_in``."""
    if not isinstance(reply, dict) or "error" in reply:
        raise _RefreshUnavailable("token endpoint returned an error object")
    token = reply.get("access_token")
    expires = reply.get("expires_in")
    if not isinstance(token, str) or not token:
        raise _RefreshUnavailable("token endpoint reply has no access_token")
    if isinstance(expires, bool) or not isinstance(expires, int | float):
        raise _RefreshUnavailable("token endpoint reply has no numeric expires_in")
    return reply


def _save_if_unchanged(path: Path, lock_path: Path, rules: lockfile.LockRules, old_refresh_token: str,
                       data: dict[str, Any], locked: bool) -> int | None:
    """Write ``data`` unless the file no longer holds ``old_refresh_token`` (the CLI moved on).

    Takes the CLI's lock file unless the caller holds it; returns the new mtime, or ``None``
    when nothing was written (the token is then used from memory).
    """
    lock_id = None
    if not locked:
        try:
            lock_id = lockfile.acquire(lock_path, rules)
        except lockfile.LockTimeout:
            return None
    try:
        on_disk = creds_file.read(path).credentials
        if on_disk is not None and on_disk.refresh_token != old_refresh_token:
            return None
        return creds_file.write_atomic(path, data)
    except OSError as exc:
        log.error("qwen-oauth: could not save the handed-over token to %s (%s)", path, type(exc).__name__)
        return None
    finally:
        if lock_id is not None:
            lockfile.release(lock_path, lock_id)
