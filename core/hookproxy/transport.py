"""The upstream interface of the proxy path, and the aiohttp session behind ``proxy.http``.

Why aiohttp underneath: httpcore's connection pool scans every pooled connection on every
request and its pure-Python HTTP/1.1 parser costs about 0.5 ms per request; the baseline
benchmark behind bench/RESULTS.md measured a naive httpx proxy at 517 req/s at c=64 against
4,986 with aiohttp underneath. We write this small transport ourselves rather than use httpx-aiohttp
because its error map turns a mid-stream disconnect into ``ConnectTimeout`` (a client would see
504 for a reset) and it builds a ``ClientTimeout`` per request.

Two doors into the same session:

* :class:`AiohttpTransport` is an ``httpx.AsyncBaseTransport``: plugins use it through
  ``proxy.http`` (an ``httpx.AsyncClient``), tests can swap in any other httpx transport
  (respx, ``httpx.MockTransport``), and every failure is an ``httpx`` exception.
* :meth:`AiohttpTransport.open` is the proxy path when ``upstream_client: aiohttp`` (the
  fallback; the default is the native client of :mod:`hookproxy.upstream_pool`). It skips
  building ``httpx.Request`` and ``httpx.Response`` objects and returns an
  :class:`UpstreamResponse`; :class:`HttpxUpstream` gives the same shape over any httpx
  transport (tests inject respx or ``httpx.MockTransport`` this way). Every proxy-path client
  is an :class:`UpstreamClient` and maps its errors to the httpx exception tree, so callers
  handle one vocabulary.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Mapping
from functools import lru_cache
from types import SimpleNamespace
from typing import Any, Protocol

import aiohttp
import httpx


@lru_cache(maxsize=64)
def _client_timeout(connect: float | None, read: float | None) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=read)


def _map_error(exc: BaseException, request: httpx.Request | None, *, connected: bool) -> httpx.TransportError:
    message = str(exc) or type(exc).__name__
    error: httpx.TransportError
    if isinstance(exc, aiohttp.ClientConnectorError):
        error = httpx.ConnectError(message)
    elif isinstance(exc, (TimeoutError, aiohttp.ServerTimeoutError)):
        error = httpx.ReadTimeout(message) if connected else httpx.ConnectTimeout(message)
    elif isinstance(exc, (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError)):
        error = httpx.RemoteProtocolError(message)
    elif isinstance(exc, aiohttp.InvalidURL):
        error = httpx.UnsupportedProtocol(message)
    else:
        error = httpx.ReadError(message)
    if request is not None:
        error.request = request
    return error


_ERRORS = (TimeoutError, aiohttp.ClientError)
#: How a pooled connection that the upstream closed while it sat idle fails the next request.
_DROPPED = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)


def _reuse_tracer() -> aiohttp.TraceConfig:
    """Marks a request's trace context when aiohttp hands it a pooled (already used) connection."""

    async def reused(_session: aiohttp.ClientSession, context: SimpleNamespace, _params: object) -> None:
        context.trace_request_ctx.reused = True

    tracer = aiohttp.TraceConfig()
    tracer.on_connection_reuseconn.append(reused)
    return tracer


async def _send_once_more_if_dropped(session: aiohttp.ClientSession, method: str, url: str,
                                     **options: Any) -> aiohttp.ClientResponse:
    """``session.request``, sent once more on a fresh connection when a pooled one turns out to
    have been closed by the upstream (the race of an idle keep-alive connection timing out just
    as it is reused); the native client has the same single re-send. Any other failure, and a
    second one, is raised."""
    for attempt in range(2):
        context = SimpleNamespace(reused=False)
        try:
            return await session.request(method, url, trace_request_ctx=context, **options)
        except _DROPPED:
            if attempt or not context.reused:
                raise
    raise AssertionError("unreachable")


class UpstreamResponse(Protocol):
    """What the chat pipeline needs of an upstream answer."""

    status: int
    reason: str
    headers: Mapping[str, str]  # case-insensitive

    def chunks(self) -> AsyncIterator[bytes]: ...

    async def read(self) -> bytes: ...

    async def aclose(self) -> None: ...


class UpstreamClient(Protocol):
    """What the proxy path sends requests through (``upstream_client`` picks the implementation)."""

    async def open(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes, timeout: float
    ) -> UpstreamResponse: ...

    async def aclose(self) -> None: ...


class _AiohttpResponse:
    """An aiohttp response seen through :class:`UpstreamResponse` (errors mapped to httpx's)."""

    __slots__ = ("_response", "status", "reason", "headers")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.reason = response.reason or ""
        self.headers: Mapping[str, str] = response.headers

    async def chunks(self) -> AsyncIterator[bytes]:
        """Bytes as they arrive (``iter_any``), so SSE is relayed without waiting for a fill."""
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except _ERRORS as exc:
            raise _map_error(exc, None, connected=True) from exc

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except _ERRORS as exc:
            raise _map_error(exc, None, connected=True) from exc

    async def aclose(self) -> None:
        if self._response.content.is_eof():
            self._response.release()
        else:
            # A stream abandoned half-way must not return its socket to the pool.
            self._response.close()


class _HttpxResponse:
    """Any httpx response (from an injected transport) seen through :class:`UpstreamResponse`."""

    __slots__ = ("_response", "status", "reason", "headers")

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status = response.status_code
        self.reason = response.reason_phrase
        self.headers: Mapping[str, str] = response.headers

    async def chunks(self) -> AsyncIterator[bytes]:
        if self._response.is_stream_consumed:  # e.g. httpx.MockTransport reads its answers first
            yield self._response.content
            return
        async for chunk in self._response.aiter_raw():
            yield chunk

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    async def aclose(self) -> None:
        await self._response.aclose()


class _ByteStream(httpx.AsyncByteStream):
    def __init__(self, response: _AiohttpResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._response.chunks():
            yield chunk

    async def aclose(self) -> None:
        await self._response.aclose()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One aiohttp session (and connection pool) per transport; create it inside the event loop."""

    def __init__(self, *, max_connections: int = 1000, keepalive_expiry: float = 30.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=self._max_connections,
                keepalive_timeout=self._keepalive_expiry,
                ttl_dns_cache=300,
                ssl=self._ssl,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
                cookie_jar=aiohttp.DummyCookieJar(),
                trace_configs=[_reuse_tracer()],
            )
        return self._session

    async def open(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes, timeout: float
    ) -> _AiohttpResponse:
        """Send one request and return as soon as the status line and headers arrived."""
        try:
            response = await _send_once_more_if_dropped(
                self._get_session(), method, url, headers=headers, data=body, allow_redirects=False, compress=None,
                timeout=_client_timeout(min(timeout, 30.0), timeout),
            )
        except _ERRORS as exc:
            raise _map_error(exc, None, connected=False) from exc
        return _AiohttpResponse(response)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        read = timeout.get("read")
        try:
            response = await _send_once_more_if_dropped(
                self._get_session(), request.method, str(request.url), headers=request.headers.multi_items(),
                data=request.content or None, allow_redirects=False, compress=None,
                timeout=_client_timeout(timeout.get("connect"), read),
            )
        except _ERRORS as exc:
            raise _map_error(exc, request, connected=False) from exc
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_ByteStream(_AiohttpResponse(response)),
            request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": (response.reason or "").encode()},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class HttpxUpstream:
    """Any httpx transport (respx, ``httpx.MockTransport`` in tests) as an :class:`UpstreamClient`."""

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self.transport = transport

    async def open(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes, timeout: float
    ) -> UpstreamResponse:
        return await open_upstream(self.transport, method, url, headers, body, timeout)

    async def aclose(self) -> None:
        """The transport belongs to whoever injected it (``Proxy`` closes it with its client)."""


async def open_upstream(
    transport: httpx.AsyncBaseTransport, method: str, url: str, headers: Mapping[str, str], body: bytes, timeout: float
) -> UpstreamResponse:
    """Send through our aiohttp fast path when it is the transport, else through httpx's interface."""
    if isinstance(transport, AiohttpTransport):
        return await transport.open(method, url, headers, body, timeout)
    extensions: dict[str, Any] = {"timeout": {"connect": min(timeout, 30.0), "read": timeout,
                                              "write": timeout, "pool": timeout}}
    request = httpx.Request(method, url, headers=headers, content=body, extensions=extensions)
    return _HttpxResponse(await transport.handle_async_request(request))
