"""How bytes reach upstreams: one aiohttp session per app, spoken to through httpx's interface.

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
* :meth:`AiohttpTransport.open` is the chat hot path. It skips building ``httpx.Request`` and
  ``httpx.Response`` objects (URL parsing, header normalisation, three stacked body iterators:
  about a fifth of the proxy's CPU per request in the bench profile) and returns an
  :class:`UpstreamResponse`; :func:`open_upstream` gives the same shape over any httpx transport.
  Errors are still mapped to the httpx exception tree, so callers handle one vocabulary.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from functools import lru_cache
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


class UpstreamResponse(Protocol):
    """What the chat pipeline needs of an upstream answer."""

    status: int
    reason: str
    headers: Mapping[str, str]  # case-insensitive

    def chunks(self) -> AsyncIterator[bytes]: ...

    async def read(self) -> bytes: ...

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

    def __init__(self, *, max_connections: int = 1000, keepalive_expiry: float = 30.0) -> None:
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=self._max_connections,
                keepalive_timeout=self._keepalive_expiry,
                ttl_dns_cache=300,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def open(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes, timeout: float
    ) -> _AiohttpResponse:
        """Send one request and return as soon as the status line and headers arrived."""
        try:
            response = await self._get_session().request(
                method, url, headers=headers, data=body, allow_redirects=False, compress=None,
                timeout=_client_timeout(min(timeout, 30.0), timeout),
            )
        except _ERRORS as exc:
            raise _map_error(exc, None, connected=False) from exc
        return _AiohttpResponse(response)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        read = timeout.get("read")
        try:
            response = await self._get_session().request(
                request.method, str(request.url), headers=request.headers.multi_items(),
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
