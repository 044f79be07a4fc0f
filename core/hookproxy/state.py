"""Shared state: what several proxy processes (workers, hosts) must agree on, behind one small API.

Plugins and the core reach it as ``proxy.state``; nobody imports a Redis client. Two
implementations pass the same tests: :class:`InProcessState` (the default: one process, nothing
leaves it) and ``RedisState`` (``state: redis://...``, in :mod:`hookproxy.redis_state`).

Why the API looks like this: the hot path of a successful request must not wait on Redis. So a
:class:`Table` is a *mirror*: :meth:`Table.peek` and :meth:`Table.seconds_left` read a local copy
(a dict lookup), which writes from any process keep current through publish/subscribe (and a
periodic reconcile). Writes (:meth:`Table.set`, :meth:`Table.delete`, :meth:`Table.incr`) and
authoritative reads (:meth:`Table.get`) do reach Redis; callers use them on error, refresh and
auth-failure paths only. Every entry has an expiry, so a lost message heals by itself.

For data too big or too many to copy into every process (stored conversations), :meth:`SharedState.put`
and :meth:`SharedState.fetch` keep values in the shared store only: each read is a round-trip
when shared, so they serve features that need them on their own path, never the plain request.

Also: :meth:`SharedState.lock` (a lock with an expiry, for single-flight work across hosts),
:meth:`SharedState.publish` / :meth:`SharedState.subscribe` (JSON messages to every process,
including this one), and :meth:`SharedState.run_soon` for sync hooks that must write.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Coroutine
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .errors import ConfigError

log = logging.getLogger("hookproxy.state")

#: JSON-compatible values (what a table holds and a message carries).
JSON = Any
Subscriber = Callable[[JSON], None]
#: Expired local entries are swept once a table holds this many (a scan cannot exhaust memory).
SWEEP_AT = 10_000
#: How often a held lock is polled for while waiting for it.
LOCK_POLL = 0.05


class Table:
    """A named key-value table with per-entry expiry; reads are local, writes are shared.

    ``bool(table)`` is false when this process knows no entry at all: the hot-path check that
    costs one attribute read when nothing is cooling down, blocked or backed off.
    """

    __slots__ = ("name", "_state", "_entries", "_written")

    def __init__(self, name: str, state: SharedState) -> None:
        self.name = name
        self._state = state
        #: key -> (value, expiry on the monotonic clock)
        self._entries: dict[str, tuple[JSON, float]] = {}
        #: key -> monotonic time of this process's last write (reconcile keeps newer local writes)
        self._written: dict[str, float] = {}

    def __bool__(self) -> bool:
        return bool(self._entries)

    # --- local reads (hot path) ---------------------------------------------------------------

    def peek(self, key: str) -> JSON | None:
        """The local copy of ``key``'s value, or ``None`` when absent or expired."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] <= time.monotonic():
            self._entries.pop(key, None)
            return None
        return entry[0]

    def seconds_left(self, key: str) -> float:
        """Seconds until ``key`` expires in the local copy (0.0 when absent)."""
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        left = entry[1] - time.monotonic()
        if left <= 0:
            self._entries.pop(key, None)
            return 0.0
        return left

    def items(self) -> dict[str, JSON]:
        """Every live local entry (for health pages and tests)."""
        now = time.monotonic()
        return {key: value for key, (value, until) in list(self._entries.items()) if until > now}

    # --- shared writes and authoritative reads (error paths) ----------------------------------

    async def set(self, key: str, value: JSON, ttl: float) -> None:
        """Store ``value`` for ``ttl`` seconds here and in every other process."""
        if ttl <= 0:
            await self.delete(key)
            return
        self.apply(key, value, ttl)
        self._written[key] = time.monotonic()
        await self._state._write(self.name, key, value, ttl)

    def set_soon(self, key: str, value: JSON, ttl: float) -> None:
        """:meth:`set` from synchronous code: local at once, shared in the background."""
        if ttl > 0:
            self.apply(key, value, ttl)
        self._state.run_soon(self.set(key, value, ttl))

    async def delete(self, key: str) -> None:
        self.apply(key, None, 0.0)
        self._written[key] = time.monotonic()
        await self._state._write(self.name, key, None, 0.0)

    async def get(self, key: str) -> JSON | None:
        """The authoritative value (a Redis read when shared); refreshes the local copy."""
        found = await self._state._read(self.name, key)
        if found is None:
            self._entries.pop(key, None)
            return None
        value, ttl = found
        self.apply(key, value, ttl)
        return value

    async def incr(self, key: str, ttl: float) -> int:
        """Add one to a shared counter (not mirrored) and return it; a new counter lives ``ttl`` s."""
        return await self._state._count(self.name, key, ttl)

    async def reset(self, key: str) -> None:
        """Forget the counter ``key``."""
        await self._state._count(self.name, key, 0.0)

    # --- used by the implementations ----------------------------------------------------------

    def apply(self, key: str, value: JSON | None, ttl: float) -> None:
        """Change the local copy only (a message from another process, or a reconcile)."""
        if value is None or ttl <= 0:
            self._entries.pop(key, None)
            return
        if len(self._entries) >= SWEEP_AT:
            self._sweep()
        self._entries[key] = (value, time.monotonic() + ttl)

    def replace(self, entries: dict[str, tuple[JSON, float]], since: float, keep: Collection[str]) -> None:
        """Take a reconciled snapshot, keeping local writes made after ``since`` or listed in ``keep``."""
        now = time.monotonic()
        merged = {key: (value, now + ttl) for key, (value, ttl) in entries.items()}
        for key, when in self._written.items():
            if when >= since or key in keep:
                local = self._entries.get(key)
                if local is None:
                    merged.pop(key, None)
                else:
                    merged[key] = local
        self._entries = merged
        self._written = {key: when for key, when in self._written.items() if when >= since or key in keep}

    def _sweep(self) -> None:
        now = time.monotonic()
        self._entries = {key: entry for key, entry in self._entries.items() if entry[1] > now}


class SharedState:
    """The API both implementations offer; see the module docstring."""

    #: Whether other processes see this state (``False`` for the in-process implementation).
    shared = False
    #: Whether the shared store is reachable now (always true in process).
    up = True

    def __init__(self) -> None:
        self._tables: dict[str, Table] = {}
        self._subscribers: dict[str, list[Subscriber]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def where(self) -> str:
        """How logs and /health name this state (a Redis URL without its password)."""
        return "in-process"

    def table(self, name: str) -> Table:
        """The table ``name`` (the same object for the same name)."""
        table = self._tables.get(name)
        if table is None:
            table = self._tables[name] = Table(name, self)
        return table

    async def put(self, key: str, value: JSON, ttl: float) -> None:
        """Keep ``value`` under ``key`` for ``ttl`` seconds in the shared store only (not mirrored)."""
        await self._put(key, value, ttl)

    async def fetch(self, key: str) -> JSON | None:
        """A value :meth:`put` by any process, or ``None`` when absent or expired."""
        return await self._fetch(key)

    def subscribe(self, channel: str, callback: Subscriber) -> None:
        """Call ``callback(message)`` for every message published on ``channel``, by any process."""
        self._subscribers.setdefault(channel, []).append(callback)

    async def publish(self, channel: str, message: JSON) -> None:
        """Send a JSON message to every subscriber of ``channel`` (this process's too)."""
        self._deliver(channel, message)

    @asynccontextmanager
    async def lock(self, name: str, *, ttl: float, wait: float) -> AsyncIterator[bool]:
        """Hold the lock ``name`` for at most ``ttl`` s; yields whether it was taken within ``wait`` s.

        The expiry frees the lock of a process that died holding it; a caller that did not get
        it (``False``) should re-check what it wanted to do, or go on without it.
        """
        token = uuid.uuid4().hex
        deadline = time.monotonic() + wait
        taken = await self._try_lock(name, token, ttl)
        while not taken and time.monotonic() < deadline:
            await asyncio.sleep(min(LOCK_POLL, max(0.0, deadline - time.monotonic())))
            taken = await self._try_lock(name, token, ttl)
        try:
            yield taken
        finally:
            if taken:
                await self._unlock(name, token)

    def run_soon(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run ``work`` in the background (for sync hooks that write); errors are logged.

        Outside an event loop (a unit test calling a hook directly) there is nobody to share
        with yet: the work is dropped, the local copy already holds the change.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            work.close()
            return
        task = loop.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("shared state: a background write failed: %r", task.exception())

    async def start(self) -> None:
        """Connect (when shared); never fails: an unreachable server is a warning."""

    async def aclose(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _deliver(self, channel: str, message: JSON) -> None:
        for callback in self._subscribers.get(channel, ()):
            try:
                callback(message)
            except Exception:  # noqa: BLE001 - one bad subscriber must not stop the others
                log.exception("shared state: a subscriber of %r failed", channel)

    # --- what an implementation provides ------------------------------------------------------

    async def _write(self, table: str, key: str, value: JSON | None, ttl: float) -> None:
        raise NotImplementedError

    async def _read(self, table: str, key: str) -> tuple[JSON, float] | None:
        raise NotImplementedError

    async def _count(self, table: str, key: str, ttl: float) -> int:
        """Increment (``ttl > 0``) or drop (``ttl == 0``) a counter; return its value."""
        raise NotImplementedError

    async def _try_lock(self, name: str, token: str, ttl: float) -> bool:
        raise NotImplementedError

    async def _put(self, key: str, value: JSON, ttl: float) -> None:
        raise NotImplementedError

    async def _fetch(self, key: str) -> JSON | None:
        raise NotImplementedError

    async def _unlock(self, name: str, token: str) -> None:
        raise NotImplementedError


class LocalStore:
    """Counters and locks with expiry in this process (the in-process state, and Redis's fallback)."""

    def __init__(self) -> None:
        self.counters: dict[tuple[str, str], tuple[int, float]] = {}
        self.locks: dict[str, tuple[str, float]] = {}
        self.values: dict[str, tuple[JSON, float]] = {}

    def put(self, key: str, value: JSON, ttl: float) -> None:
        now = time.monotonic()
        if len(self.values) >= SWEEP_AT:
            self.values = {k: v for k, v in self.values.items() if v[1] > now}
        self.values[key] = (value, now + ttl)

    def fetch(self, key: str) -> JSON | None:
        entry = self.values.get(key)
        if entry is None or entry[1] <= time.monotonic():
            self.values.pop(key, None)
            return None
        return entry[0]

    def count(self, table: str, key: str, ttl: float) -> int:
        now = time.monotonic()
        if ttl <= 0:
            self.counters.pop((table, key), None)
            return 0
        if len(self.counters) >= SWEEP_AT:
            self.counters = {k: v for k, v in self.counters.items() if v[1] > now}
        value, until = self.counters.get((table, key), (0, 0.0))
        if until <= now:
            value, until = 0, now + ttl
        self.counters[(table, key)] = (value + 1, until)
        return value + 1

    def try_lock(self, name: str, token: str, ttl: float) -> bool:
        held = self.locks.get(name)
        now = time.monotonic()
        if held is not None and held[1] > now:
            return False
        self.locks[name] = (token, now + ttl)
        return True

    def unlock(self, name: str, token: str) -> None:
        held = self.locks.get(name)
        if held is not None and held[0] == token:
            del self.locks[name]


class InProcessState(SharedState):
    """Everything in this process: the default without a ``state`` setting."""

    def __init__(self) -> None:
        super().__init__()
        self._local = LocalStore()

    async def _write(self, table: str, key: str, value: JSON | None, ttl: float) -> None:
        return None  # the local copy is the state

    async def _read(self, table: str, key: str) -> tuple[JSON, float] | None:
        left = self.table(table).seconds_left(key)
        return (self.table(table).peek(key), left) if left > 0 else None

    async def _count(self, table: str, key: str, ttl: float) -> int:
        return self._local.count(table, key, ttl)

    async def _try_lock(self, name: str, token: str, ttl: float) -> bool:
        return self._local.try_lock(name, token, ttl)

    async def _unlock(self, name: str, token: str) -> None:
        self._local.unlock(name, token)

    async def _put(self, key: str, value: JSON, ttl: float) -> None:
        self._local.put(key, value, ttl)

    async def _fetch(self, key: str) -> JSON | None:
        return self._local.fetch(key)


# --- configuration ------------------------------------------------------------------------------

STATE_SCHEMES = ("redis", "rediss", "unix")


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for logs, errors and /health)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        port = ""
    netloc = f"{user}:***@{host}{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def check_state_url(url: str) -> None:
    """Raise a one-line ConfigError when ``url`` is not a usable Redis URL (no connection made)."""
    shown = redact_url(url)
    fix = "use state: redis://host:6379/0 (or rediss:// for TLS), env HOOKPROXY_STATE or --state"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"state URL {shown} is invalid ({exc}); {fix}") from None
    if parts.scheme not in STATE_SCHEMES:
        raise ConfigError(f"state URL {shown} must start with redis://, rediss:// or unix://; {fix}")
    if parts.scheme == "unix":
        if not parts.path:
            raise ConfigError(f"state URL {shown} names no socket path; {fix}")
        return
    if not parts.hostname:
        raise ConfigError(f"state URL {shown} names no host; {fix}")
    if port == 0:
        raise ConfigError(f"state URL {shown} has port 0; {fix}")
    database = parts.path.lstrip("/")
    if database and not database.isdigit():
        raise ConfigError(f"state URL {shown}: the database after the host must be a number, got {database!r}; {fix}")


def open_state(url: str | None) -> SharedState:
    """The state for the ``state`` setting: in-process without a URL, else Redis (checked here)."""
    if not url:
        return InProcessState()
    check_state_url(url)
    from .redis_state import RedisState  # only a proxy configured for Redis imports the client

    return RedisState(url)
