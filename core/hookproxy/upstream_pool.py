"""The proxy path's upstream client: keep-alive pools of :class:`H1Connection`, one per host.

:class:`NativeUpstreamClient` is what ``upstream_client: native`` (the default) selects; aiohttp
stays available as ``upstream_client: aiohttp`` and remains the client behind ``proxy.http`` for
plugins' own calls (token endpoints and the like).

Pool rules: at most ``max_connections_per_host`` sockets per (scheme, host, port); a request
beyond that waits for one (bounded by its timeout). Idle sockets are reused newest first and
closed after ``keepalive_expiry`` seconds unused. TLS uses the ``ssl`` default context
(certificate and host name verified), optionally with an extra CA bundle.

Re-sending: a request is sent at most twice, and the second time only when the first socket was
found dead before the kernel took any byte of the request: a pooled socket is checked before use
(closed, or bytes/EOF pending), and if the write itself fails on a reused socket (or the socket
closed while the request was held for the end of the loop's turn, see ``H1Connection.send``) the
request goes once more on a fresh one. Once a request was written, a failure is reported, never re-sent: the
upstream may have started working on it.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

import httpx

from .h1_connection import H1Connection, H1Response
from .turn_batch import TurnBatch

#: The longest wait for a TCP (and TLS) connection, whatever the request's own timeout.
MAX_CONNECT_TIMEOUT = 30.0
#: Headers the client writes itself; the same names in a request's headers are dropped.
_OWN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})


@dataclass(frozen=True, slots=True)
class Target:
    """Where one URL's requests go, parsed once per URL string."""

    key: tuple[str, str, int]
    host: str
    port: int
    tls: bool
    request_target: str
    host_header: str


@lru_cache(maxsize=256)
def parse_target(url: str) -> Target:
    """Backends' URLs are few and fixed, so parsing is cached by the URL string."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise httpx.UnsupportedProtocol(f"unsupported URL scheme {parts.scheme!r} in {url!r}; use http or https")
    host = parts.hostname
    if not host:
        raise httpx.UnsupportedProtocol(f"no host in URL {url!r}")
    default_port = 443 if scheme == "https" else 80
    try:
        port = parts.port or default_port
    except ValueError as exc:
        raise httpx.UnsupportedProtocol(f"invalid port in URL {url!r}") from exc
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == default_port else f"{shown}:{port}"
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target((scheme, host, port), host, port, scheme == "https", path, host_header)


def request_head(method: str, target: Target, headers: Mapping[str, str], length: int) -> bytes:
    """The request line and headers; a header with a line break is refused (header injection)."""
    lines = [f"{method} {target.request_target} HTTP/1.1\r\nHost: {target.host_header}\r\n"]
    lines += [f"{name}: {value}\r\n" for name, value in headers.items() if name.lower() not in _OWN_HEADERS]
    lines.append(f"Content-Length: {length}\r\n\r\n")
    head = "".join(lines)
    # The request line, Host, each header and the blank line bring one CRLF each: any other CR or
    # LF came from a name, a value or the URL (one count instead of four checks per header).
    if head.count("\n") != len(lines) + 2 or head.count("\r") != len(lines) + 2 or ":" in "".join(headers):
        _refuse_bad_header(headers)
    try:
        return head.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise httpx.LocalProtocolError(f"request headers must be Latin-1 text: {exc}") from exc


def _refuse_bad_header(headers: Mapping[str, str]) -> None:
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
            raise httpx.LocalProtocolError(f"request header {name!r} contains a line break or colon")
    raise httpx.LocalProtocolError("the request line contains a line break")


def make_ssl_context(ca_bundle: str | None = None) -> ssl.SSLContext:
    """The default context (verification on); ``ca_bundle`` adds trusted CAs from a PEM file."""
    context = ssl.create_default_context()
    if ca_bundle:
        context.load_verify_locations(cafile=ca_bundle)
    return context


class _HostPool:
    """The connections to one (scheme, host, port)."""

    __slots__ = ("idle", "count", "waiters", "sweep")

    def __init__(self) -> None:
        self.idle: list[H1Connection] = []  # oldest first; reuse takes the newest
        self.count = 0  # open or opening connections
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.sweep: asyncio.TimerHandle | None = None


class NativeUpstreamClient:
    """Sends proxy-path requests; create it inside the running event loop (``Proxy.start``)."""

    def __init__(self, *, max_connections_per_host: int = 1000, keepalive_expiry: float = 30.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self._limit = max_connections_per_host
        self._expiry = keepalive_expiry
        self._ssl = ssl_context
        self._pools: dict[tuple[str, str, int], _HostPool] = {}
        self._closed = False
        #: Requests held to the end of the event loop's turn (see ``H1Connection.send``).
        self._batch = TurnBatch(self._loop)

    async def open(self, method: str, url: str, headers: Mapping[str, str], body: bytes,
                   timeout: float) -> H1Response:
        """Send one request; return once the status line and headers arrived."""
        if self._closed:
            raise httpx.ConnectError("the upstream client is closed")
        target = parse_target(url)
        head = request_head(method, target, headers, len(body))
        pool = self._pools.get(target.key)
        if pool is None:
            pool = self._pools[target.key] = _HostPool()
        connection = self._reuse(pool)
        reused = connection is not None
        if connection is None:
            connection = await self._connect(pool, target, timeout)
        try:
            return await self._exchange(connection, head, body, timeout)
        except httpx.HTTPError:
            if not (reused and connection.not_sent):
                raise
        # The socket was dead before the kernel took a byte of the request: once more, on a new one.
        connection = await self._connect(pool, target, timeout)
        return await self._exchange(connection, head, body, timeout)

    @staticmethod
    async def _exchange(connection: H1Connection, head: bytes, body: bytes, timeout: float) -> H1Response:
        """Send on ``connection`` and wait for the answer's head; the connection is closed on failure."""
        response = connection.send(head, body, timeout)
        try:
            if connection.writing_paused:
                await connection.drain()
            await response.wait_headers(timeout)
        except BaseException:
            connection.close()
            raise
        return response

    def _reuse(self, pool: _HostPool) -> H1Connection | None:
        idle = pool.idle
        now = self._loop.time()
        expired = now - self._expiry
        while idle:
            connection = idle.pop()
            if connection.idle_since >= expired and connection.usable(now):
                return connection
            connection.close()
        return None

    async def _connect(self, pool: _HostPool, target: Target, timeout: float) -> H1Connection:
        loop = self._loop
        while pool.count >= self._limit:
            waiter = loop.create_future()
            pool.waiters.append(waiter)
            try:
                async with asyncio.timeout(timeout):
                    await waiter
            except TimeoutError:
                raise httpx.PoolTimeout(f"no free connection to {target.host_header} within {timeout:g}s "
                                        f"({self._limit} in use)") from None
            finally:
                if waiter in pool.waiters:
                    pool.waiters.remove(waiter)
            reused = self._reuse(pool)
            if reused is not None:
                return reused
        pool.count += 1
        connect_timeout = min(timeout, MAX_CONNECT_TIMEOUT)
        tls = None
        if target.tls:
            tls = self._ssl if self._ssl is not None else self._default_ssl()

        def protocol() -> H1Connection:
            return H1Connection(loop, lambda connection: self._release(pool, connection),
                                lambda connection: self._lost(pool, connection), self._batch)

        try:
            async with asyncio.timeout(connect_timeout):
                _, connection = await loop.create_connection(
                    protocol, target.host, target.port, ssl=tls, server_hostname=target.host if tls else None)
        except TimeoutError:
            self._forget(pool)
            raise httpx.ConnectTimeout(f"connecting to {target.host_header} took over {connect_timeout:g}s") from None
        except ssl.SSLCertVerificationError as exc:
            self._forget(pool)
            raise httpx.ConnectError(f"TLS certificate of {target.host_header} not trusted: {exc.verify_message}; "
                                     "set ca_bundle to a PEM file with its CA") from exc
        except OSError as exc:
            self._forget(pool)
            raise httpx.ConnectError(f"cannot connect to {target.host_header}: {exc.strerror or exc}") from exc
        except BaseException:
            self._forget(pool)
            raise
        return connection

    def _default_ssl(self) -> ssl.SSLContext:
        self._ssl = make_ssl_context()
        return self._ssl

    def _forget(self, pool: _HostPool) -> None:
        """A connection slot that never became a connection (failed connect) is free again."""
        pool.count -= 1
        self._wake_one(pool)

    def _release(self, pool: _HostPool, connection: H1Connection) -> None:
        if self._closed:
            connection.close()
            return
        pool.idle.append(connection)
        if pool.sweep is None:
            pool.sweep = self._loop.call_later(self._expiry, self._sweep, pool)
        self._wake_one(pool)

    def _lost(self, pool: _HostPool, connection: H1Connection) -> None:
        pool.count -= 1
        if connection in pool.idle:
            pool.idle.remove(connection)
        self._wake_one(pool)

    @staticmethod
    def _wake_one(pool: _HostPool) -> None:
        while pool.waiters:
            waiter = pool.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _sweep(self, pool: _HostPool) -> None:
        """Close the connections idle for longer than ``keepalive_expiry`` (oldest are first)."""
        pool.sweep = None
        expired = self._loop.time() - self._expiry
        while pool.idle and pool.idle[0].idle_since < expired:
            pool.idle.pop(0).close()
        if pool.idle:
            pool.sweep = self._loop.call_at(pool.idle[0].idle_since + self._expiry, self._sweep, pool)

    async def aclose(self) -> None:
        self._closed = True
        for pool in self._pools.values():
            if pool.sweep is not None:
                pool.sweep.cancel()
                pool.sweep = None
            for connection in pool.idle:
                connection.close()
            pool.idle.clear()
        await asyncio.sleep(0)  # let the transports run connection_lost
