"""An httpx transport that moves bytes with aiohttp.

Why: httpx is our interface (plugins, respx mocks and tests all speak it), but httpcore's
connection pool scans every pooled connection on every request and its pure-Python HTTP/1.1
parser costs about 0.5 ms per request; the bench (../shared/bench/RESULTS.md) measured a naive
httpx proxy at 517 req/s at c=64 against 4,986 with aiohttp underneath. We write the ~80 lines
ourselves rather than use httpx-aiohttp because its error map turns a mid-stream disconnect
into ``ConnectTimeout`` (a client would see 504 for a reset) and it builds a ``ClientTimeout``
per request; here each aiohttp failure maps to the httpx error that means the same thing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import lru_cache

import aiohttp
import httpx


@lru_cache(maxsize=64)
def _client_timeout(connect: float | None, read: float | None) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=read)


def _map_error(exc: BaseException, request: httpx.Request, *, connected: bool) -> httpx.TransportError:
    message = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message, request=request)
    if isinstance(exc, (TimeoutError, aiohttp.ServerTimeoutError)):
        if connected:
            return httpx.ReadTimeout(message or "read timed out", request=request)
        return httpx.ConnectTimeout(message or "connect timed out", request=request)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return httpx.RemoteProtocolError(message, request=request)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return httpx.RemoteProtocolError(message, request=request)
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol(message, request=request)
    return httpx.ReadError(message, request=request)


class _ResponseStream(httpx.AsyncByteStream):
    """Yields bytes as they arrive (``iter_any``), so SSE is relayed without waiting for fill."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _map_error(exc, self._request, connected=True) from exc

    async def aclose(self) -> None:
        self._response.release()
        if not self._response.content.is_eof():
            # A stream abandoned half-way must not return its socket to the pool.
            self._response.close()


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

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._get_session()
        timeout = request.extensions.get("timeout", {})
        data = request.content if request.content else None
        try:
            response = await session.request(
                request.method,
                str(request.url),
                headers=request.headers.multi_items(),
                data=data,
                allow_redirects=False,
                compress=None,
                timeout=_client_timeout(timeout.get("connect"), timeout.get("read")),
            )
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _map_error(exc, request, connected=False) from exc
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_ResponseStream(response, request),
            request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": (response.reason or "").encode()},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
