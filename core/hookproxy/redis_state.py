"""The shared state in Redis (``state: redis://...``): several workers and hosts act as one proxy.

How it keeps Redis off the hot path (see :mod:`hookproxy.state` for the API):

* Reads are local. Each table's local copy is updated by one pub/sub channel
  (``hookproxy:mirror``) that every write publishes on, and rebuilt from Redis every
  ``reconcile_interval`` seconds (``SCAN`` of the table's keys) so a lost message heals.
* Writes go to Redis at once (``SET ... PX`` plus ``PUBLISH``, one round-trip in a pipeline);
  counters are ``INCR`` with an expiry; locks are ``SET NX PX`` released by a compare-and-delete
  script, so only the holder frees a lock and a crashed holder's lock expires.
* Redis down or unreachable: one warning naming the URL (never the password); tables, counters
  and locks fall back to this process; writes made meanwhile are replayed on reconnect; a
  background task reconnects by itself (0.5 s, doubling to 5 s). Requests keep flowing.

Keys: ``hookproxy:m:<table>:<key>`` (mirrored values, JSON), ``hookproxy:n:<table>:<key>``
(counters), ``hookproxy:v:<key>`` (values kept in Redis only), ``hookproxy:lock:<name>``;
channels ``hookproxy:mirror`` and ``hookproxy:ch:<name>``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

import orjson
import redis.asyncio as redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from .state import JSON, LocalStore, SharedState, redact_url

log = logging.getLogger("hookproxy.state")

PREFIX = "hookproxy"
MIRROR_CHANNEL = f"{PREFIX}:mirror"
CHANNEL_PREFIX = f"{PREFIX}:ch:"
#: Commands on the error path give up quickly: a slow Redis must not slow a failover down much.
COMMAND_TIMEOUT = 0.5
RECONNECT_FIRST, RECONNECT_MAX = 0.5, 5.0
#: How long ``start`` waits for the first connection before serving from local state.
START_WAIT = 2.0
_UNLOCK = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
#: Errors that mean "Redis is not usable now" (refused, reset, timed out, loading, read-only...).
DOWN = (RedisError, OSError, asyncio.TimeoutError)


def _mirror_key(table: str, key: str) -> str:
    return f"{PREFIX}:m:{table}:{key}"


def _counter_key(table: str, key: str) -> str:
    return f"{PREFIX}:n:{table}:{key}"


class RedisState(SharedState):
    """Tables, counters, locks and messages shared through one Redis server."""

    shared = True

    def __init__(self, url: str, *, reconcile_interval: float = 10.0) -> None:
        super().__init__()
        self.url = url
        self.reconcile_interval = reconcile_interval
        self.up = False
        self._id = uuid.uuid4().hex  # our own mirror messages are not applied twice
        self._local = LocalStore()
        self._dirty: dict[str, set[str]] = {}  # table -> keys written while Redis was down
        self._warned = False
        self._client: redis.Redis | None = None
        self._listener: asyncio.Task[None] | None = None
        self._first_attempt = asyncio.Event()

    @property
    def where(self) -> str:
        return redact_url(self.url)

    # --- lifecycle -----------------------------------------------------------------------------

    def _connect(self, timeout: float | None) -> redis.Redis:
        return redis.Redis.from_url(
            self.url, socket_connect_timeout=COMMAND_TIMEOUT, socket_timeout=timeout,
            # One immediate retry: a pooled connection may have died with a restarted server.
            retry=Retry(NoBackoff(), 1), health_check_interval=0,
        )

    async def start(self) -> None:
        if self._listener is not None:
            return
        self._client = self._connect(COMMAND_TIMEOUT)
        self._listener = asyncio.get_running_loop().create_task(self._listen())
        try:
            await asyncio.wait_for(self._first_attempt.wait(), START_WAIT)
        except TimeoutError:
            self._down(TimeoutError(f"no answer within {START_WAIT:g}s"))

    async def aclose(self) -> None:
        await super().aclose()
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _down(self, error: BaseException) -> None:
        self.up = False
        if not self._warned:
            self._warned = True
            log.warning("shared state: Redis at %s is unreachable (%s: %s); serving from this process's state "
                        "and reconnecting in the background", self.where, type(error).__name__, error)

    async def _listen(self) -> None:
        """Subscribe, reconcile, apply messages; on any connection error, reconnect with backoff."""
        delay = RECONNECT_FIRST
        while True:
            subscriber = self._connect(None)
            pubsub = subscriber.pubsub()
            try:
                await pubsub.subscribe(MIRROR_CHANNEL)
                await pubsub.psubscribe(CHANNEL_PREFIX + "*")
                await self._sync()
                self._first_attempt.set()
                delay = RECONNECT_FIRST
                await self._pump(pubsub)
            except asyncio.CancelledError:
                raise
            except DOWN as error:
                self._down(error)
            finally:
                self._first_attempt.set()
                await _quietly(pubsub.aclose())  # type: ignore[no-untyped-call]
                await _quietly(subscriber.aclose())
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX)

    async def _pump(self, pubsub: Any) -> None:
        next_reconcile = time.monotonic() + self.reconcile_interval
        while True:
            timeout = max(0.0, next_reconcile - time.monotonic())
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout)
            if message is not None:
                self._on_message(message)
            if time.monotonic() >= next_reconcile:
                await self._sync()
                next_reconcile = time.monotonic() + self.reconcile_interval

    def _on_message(self, message: dict[str, Any]) -> None:
        try:
            data = orjson.loads(message["data"])
        except (orjson.JSONDecodeError, TypeError, KeyError):
            return
        channel = message.get("channel", b"")
        channel = channel.decode() if isinstance(channel, bytes) else str(channel)
        if not isinstance(data, dict) or data.get("s") == self._id:
            return  # our own message: already applied or delivered locally
        if channel == MIRROR_CHANNEL:
            table = self._tables.get(str(data.get("t")))
            if table is not None:
                table.apply(str(data.get("k")), data.get("v"), float(data.get("ttl") or 0.0))
        elif channel.startswith(CHANNEL_PREFIX):
            self._deliver(channel[len(CHANNEL_PREFIX):], data.get("m"))

    async def _sync(self) -> None:
        """Replay writes made while Redis was unusable, rebuild the local copies, mark Redis usable."""
        await self._replay_dirty()
        await self._reconcile()
        if self._warned:
            log.warning("shared state: reconnected to Redis at %s", self.where)
            self._warned = False
        self.up = True

    async def _reconcile(self) -> None:
        """Rebuild every local table from Redis (keeping local writes made meanwhile)."""
        client = self._require()
        for name, table in list(self._tables.items()):
            started = time.monotonic()
            pattern = _mirror_key(name, "*")
            keys = [key async for key in client.scan_iter(match=pattern, count=500)]
            entries: dict[str, tuple[JSON, float]] = {}
            if keys:
                async with client.pipeline(transaction=False) as pipe:
                    for key in keys:
                        pipe.get(key)
                        pipe.pttl(key)
                    replies = await pipe.execute()
                offset = len(_mirror_key(name, ""))
                for index, key in enumerate(keys):
                    raw, ttl_ms = replies[2 * index], replies[2 * index + 1]
                    if raw is None or ttl_ms is None or ttl_ms <= 0:
                        continue
                    name_part = key.decode()[offset:] if isinstance(key, bytes) else str(key)[offset:]
                    entries[name_part] = (orjson.loads(raw), ttl_ms / 1000.0)
            table.replace(entries, started, self._dirty.get(name, set()))

    async def _replay_dirty(self) -> None:
        """Push what this process wrote while Redis was unreachable (still-live entries only)."""
        for name, keys in list(self._dirty.items()):
            table = self.table(name)
            for key in list(keys):
                left = table.seconds_left(key)
                await self._send(name, key, table.peek(key) if left > 0 else None, left)
                keys.discard(key)  # only once Redis has it: a failure keeps it for the next try
            if not keys:
                self._dirty.pop(name, None)

    def _require(self) -> redis.Redis:
        if self._client is None:
            raise ConnectionError("the shared state was not started")
        return self._client

    # --- the implementation's side of the API -----------------------------------------------------

    async def _send(self, table: str, key: str, value: JSON | None, ttl: float) -> None:
        client = self._require()
        message = orjson.dumps({"s": self._id, "t": table, "k": key, "v": value, "ttl": ttl})
        async with client.pipeline(transaction=False) as pipe:
            if value is None or ttl <= 0:
                pipe.delete(_mirror_key(table, key))
            else:
                pipe.set(_mirror_key(table, key), orjson.dumps(value), px=max(1, int(ttl * 1000)))
            pipe.publish(MIRROR_CHANNEL, message)
            await pipe.execute()

    async def _write(self, table: str, key: str, value: JSON | None, ttl: float) -> None:
        if self.up:
            try:
                await self._send(table, key, value, ttl)
                return
            except DOWN as error:
                self._down(error)
        self._dirty.setdefault(table, set()).add(key)

    async def _read(self, table: str, key: str) -> tuple[JSON, float] | None:
        local = self.table(table)
        if self.up:
            try:
                async with self._require().pipeline(transaction=False) as pipe:
                    pipe.get(_mirror_key(table, key))
                    pipe.pttl(_mirror_key(table, key))
                    raw, ttl_ms = await pipe.execute()
            except DOWN as error:
                self._down(error)
            else:
                if raw is None or ttl_ms is None or ttl_ms <= 0:
                    return None
                return orjson.loads(raw), ttl_ms / 1000.0
        left = local.seconds_left(key)
        return (local.peek(key), left) if left > 0 else None

    async def _count(self, table: str, key: str, ttl: float) -> int:
        if self.up:
            name = _counter_key(table, key)
            try:
                async with self._require().pipeline(transaction=True) as pipe:
                    if ttl <= 0:
                        pipe.delete(name)
                        await pipe.execute()
                        return 0
                    pipe.set(name, 0, nx=True, px=max(1, int(ttl * 1000)))
                    pipe.incr(name)
                    _created, value = await pipe.execute()
                    return int(value)
            except DOWN as error:
                self._down(error)
        return self._local.count(table, key, ttl)

    async def _try_lock(self, name: str, token: str, ttl: float) -> bool:
        if self.up:
            try:
                taken = await self._require().set(f"{PREFIX}:lock:{name}", token, nx=True,
                                                  px=max(1, int(ttl * 1000)))
                return bool(taken)
            except DOWN as error:
                self._down(error)
        return self._local.try_lock(name, token, ttl)

    async def _unlock(self, name: str, token: str) -> None:
        self._local.unlock(name, token)
        if self.up:
            try:
                await self._require().eval(_UNLOCK, 1, f"{PREFIX}:lock:{name}", token)
            except DOWN as error:
                self._down(error)

    async def _put(self, key: str, value: JSON, ttl: float) -> None:
        if self.up:
            try:
                await self._require().set(f"{PREFIX}:v:{key}", orjson.dumps(value), px=max(1, int(ttl * 1000)))
                return
            except DOWN as error:
                self._down(error)
        self._local.put(key, value, ttl)  # this process can still read it back

    async def _fetch(self, key: str) -> JSON | None:
        if self.up:
            try:
                raw = await self._require().get(f"{PREFIX}:v:{key}")
            except DOWN as error:
                self._down(error)
            else:
                if raw is not None:
                    return orjson.loads(raw)
        return self._local.fetch(key)

    async def publish(self, channel: str, message: JSON) -> None:
        self._deliver(channel, message)
        if self.up:
            try:
                await self._require().publish(CHANNEL_PREFIX + channel, orjson.dumps({"s": self._id, "m": message}))
            except DOWN as error:
                self._down(error)


async def _quietly(work: Any) -> None:
    try:
        await work
    except Exception:  # noqa: BLE001, S110 - closing a broken connection may fail; nothing to do
        pass
