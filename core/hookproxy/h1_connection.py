"""One keep-alive HTTP/1.1 connection to an upstream: an asyncio protocol parsing with httptools.

Why not aiohttp on the proxy path: the bench profile charged about half of the proxy's CPU per
request to aiohttp's client and our wrapper around it (request/response objects, timers, stream
readers, tracing hooks). The proxy needs much less: write one request, parse the answer with the
same C parser uvicorn uses (httptools), hand the body over as it arrives. This module is that
connection; :mod:`hookproxy.upstream_pool` opens, pools and reuses them.

Behaviour that callers rely on:

* Bodies framed by ``Content-Length``, ``chunked`` or the end of the connection (close-delimited)
  are all handled by the parser; a connection cut before the declared end is an error.
* Backpressure: a response buffers at most ``HIGH_WATER`` bytes before the socket stops being
  read; reading resumes when the consumer took them.
* One read timeout per response covers the wait for the headers and every wait for body bytes
  (time the consumer spends not reading does not count). It costs one timer per response,
  re-armed lazily, not one per chunk.
* Every failure is an ``httpx`` exception, so the proxy's one error mapping (502/504) applies.
"""

from __future__ import annotations

import asyncio
import select
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any, cast

import httptools
import httpx

from .turn_batch import TurnBatch

_CAN_POLL = hasattr(select, "poll")
#: A pooled socket idle for longer than this is polled before reuse: upstream idle timeouts are
#: seconds long, so a socket reused sooner cannot have been closed by one (and polling costs a
#: few microseconds per request under load).
PEEK_AFTER_IDLE = 0.25

#: Buffered response bytes above which the socket is no longer read (backpressure); reading
#: resumes when the consumer takes the buffer.
HIGH_WATER = 256 * 1024


class ResponseHeaders(Mapping[str, str]):
    """Response headers with case-insensitive lookup (names are stored lower-case)."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: dict[str, str] = {}

    def add(self, name: str, value: str) -> None:
        name = name.lower()
        previous = self._items.get(name)
        self._items[name] = value if previous is None else f"{previous}, {value}"

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()]

    def get(self, name: str, default: Any = None) -> Any:
        return self._items.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"ResponseHeaders({sorted(self._items)})"


class H1Response:
    """The answer on one :class:`H1Connection`; an ``UpstreamResponse`` for the proxy pipeline."""

    __slots__ = ("status", "reason", "headers", "_headers", "_connection", "_chunks", "_buffered", "_headers_done",
                 "_complete", "_error", "_finished", "_close_delimited", "_keep_alive", "_collect")

    def __init__(self, connection: H1Connection) -> None:
        self.status = 0
        self.reason = ""
        self._headers = ResponseHeaders()
        self.headers: Mapping[str, str] = self._headers
        self._connection = connection
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._headers_done = False
        self._complete = False
        self._error: httpx.HTTPError | None = None
        self._finished = False  # the connection went back to the pool or was closed
        self._close_delimited = False
        self._keep_alive = False
        self._collect = False  # read() takes the whole body: no backpressure for it

    # --- fed by the connection --------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > HIGH_WATER and not self._collect:
            self._connection.pause_reading()

    def _fail(self, error: httpx.HTTPError) -> None:
        if self._error is None and not self._complete:
            self._error = error

    # --- read by the proxy ------------------------------------------------------------------

    async def wait_headers(self, timeout: float) -> None:
        connection = self._connection
        while not self._headers_done:
            if self._error is not None:
                raise self._error
            await connection.wait(timeout)

    def _take(self) -> bytes:
        """Everything buffered, as one piece: a burst of SSE events goes to the client in one write."""
        chunks = self._chunks
        chunk = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        self._connection.resume_reading()
        return chunk

    async def chunks(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive, so SSE events are relayed without waiting for a fill.

        What arrived together is handed over together (each piece costs the relay a client write).
        """
        connection = self._connection
        try:
            while True:
                if self._chunks:
                    yield self._take()
                elif self._error is not None:
                    raise self._error
                elif self._complete:
                    return
                else:
                    await connection.wait(connection.read_timeout)
        finally:
            self._finish()

    async def read(self) -> bytes:
        """The whole body (the consumer is this coroutine, so nothing is paused for it)."""
        connection = self._connection
        self._collect = True
        connection.resume_reading()
        try:
            while not self._complete:
                if self._error is not None:
                    raise self._error
                await connection.wait(connection.read_timeout)
            if self._error is not None:
                raise self._error
            chunks = self._chunks
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            chunks.clear()
            self._buffered = 0
            return body
        finally:
            self._finish()

    async def aclose(self) -> None:
        self._finish()

    def _finish(self) -> None:
        """Give the connection back when the answer was read to its end, else close it."""
        if self._finished:
            return
        self._finished = True
        connection = self._connection
        if self._complete and self._error is None and self._keep_alive:
            connection.release()
        else:
            if self._error is None and not self._complete:
                self._error = httpx.ReadError("the response was closed before its end")
            connection.close()


class H1Connection(asyncio.Protocol):
    """A socket to one upstream host, carrying one request at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_release: Callable[[H1Connection], None],
                 on_lost: Callable[[H1Connection], None],
                 batch: TurnBatch | None = None) -> None:
        self._loop = loop
        self._on_release = on_release
        self._on_lost = on_lost
        self._batch = batch
        self._corked = b""
        #: The last request never reached the kernel (the socket was dead): it may be sent again.
        self.not_sent = False
        self._transport: asyncio.Transport | None = None
        self._fd = -1
        self._parser = httptools.HttpResponseParser(self)
        self._response: H1Response | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._waiting_since = 0.0
        self._last_data = 0.0
        self._reading_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._reason: list[bytes] = []
        self.read_timeout = 120.0
        self.closed = False
        self.idle_since = 0.0

    # --- asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's TLS transport is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self._fd = sock.fileno()

    def data_received(self, data: bytes) -> None:
        response = self._response
        if response is None or response._complete:
            self.close()  # bytes nobody asked for: this connection cannot be trusted with another request
            return
        self._last_data = self._loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            response._fail(httpx.RemoteProtocolError(f"the upstream sent an invalid HTTP response: {exc}"))
            self.close()
        self._wake()

    def eof_received(self) -> bool:
        response = self._response
        if response is not None and not response._complete and response._close_delimited:
            response._complete = True  # the end of the connection is the end of this body
        self._connection_ended(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._connection_ended(exc)
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        self._on_lost(self)

    def pause_writing(self) -> None:
        self._drain = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        self._drain = None

    # --- httptools callbacks ---------------------------------------------------------------------

    def on_status(self, status: bytes) -> None:
        self._reason.append(status)

    def on_header(self, name: bytes, value: bytes) -> None:
        # ResponseHeaders.add, inlined: upstreams send a dozen or two headers per answer.
        assert self._response is not None
        items = self._response._headers._items
        key = name.decode("latin-1").lower()
        previous = items.get(key)
        items[key] = value.decode("latin-1") if previous is None else f"{previous}, {value.decode('latin-1')}"

    def on_headers_complete(self) -> None:
        response = self._response
        assert response is not None
        parser = self._parser
        status = parser.get_status_code()
        if status < 200:  # 1xx (e.g. 103 Early Hints): the real answer follows
            response._headers = ResponseHeaders()
            response.headers = response._headers
            self._reason.clear()
            return
        response.status = status
        response.reason = b"".join(self._reason).decode("latin-1")
        self._reason.clear()
        response._keep_alive = parser.should_keep_alive()
        headers = response._headers
        response._close_delimited = (
            "content-length" not in headers and "transfer-encoding" not in headers
            and response.status >= 200 and response.status not in (204, 304)
        )
        response._headers_done = True

    def on_body(self, body: bytes) -> None:
        assert self._response is not None
        self._response._feed(body)

    def on_message_complete(self) -> None:
        response = self._response
        assert response is not None
        if response._headers_done:  # not the end of a 1xx
            response._complete = True

    # --- used by the pool and the response ---------------------------------------------------------

    def usable(self, now: float) -> bool:
        """Open and quiet: an idle keep-alive socket with bytes or EOF pending is dead to us.

        The peek catches a close the event loop has not processed yet (the upstream's idle
        timeout fired just now), so the request goes out on another connection instead.
        """
        if self.closed or self._transport is None or self._transport.is_closing():
            return False
        if self._fd < 0 or not _CAN_POLL or now - self.idle_since < PEEK_AFTER_IDLE:
            return True
        poller = select.poll()
        poller.register(self._fd, select.POLLIN | select.POLLPRI)
        return not poller.poll(0)

    def send(self, head: bytes, body: bytes, read_timeout: float) -> H1Response:
        """Write a request; the answer is read through the returned response.

        With ``batch`` (the pool's), a request of usual size that is not the first of this turn
        of the event loop is held to the end of the turn (:mod:`hookproxy.turn_batch`).
        """
        transport = self._transport
        assert transport is not None and self._response is None
        response = self._response = H1Response(self)
        self.read_timeout = read_timeout
        if len(body) < 65536:
            if self._batch is not None and self._batch.holds(self):
                self._corked = head + body
                return response
            transport.write(head + body)
        else:
            transport.write(head)
            transport.write(body)
        if self.write_failed:
            self._refused()
        return response

    def uncork(self) -> None:
        """Write the request held by :meth:`send` (the pool calls this at the end of the turn)."""
        data, self._corked = self._corked, b""
        if not data:
            return
        if not self.write_failed:  # else closed while the request waited: no byte of it was sent
            assert self._transport is not None
            self._transport.write(data)
        if self.write_failed:
            self._refused()

    def _refused(self) -> None:
        """The kernel took no byte of the request: the socket was dead before it was sent."""
        self.not_sent = True
        response = self._response
        if response is not None:
            response._fail(httpx.WriteError("the upstream connection was closed before the request was sent"))
        self.close()
        self._wake()

    @property
    def write_failed(self) -> bool:
        """Whether the kernel refused the request just written (the peer had reset the socket)."""
        return self.closed or self._transport is None or self._transport.is_closing()

    @property
    def writing_paused(self) -> bool:
        """Whether the socket's send buffer is full (then :meth:`drain` waits until it empties)."""
        return self._drain is not None

    async def drain(self) -> None:
        if self._drain is not None:
            await self._drain

    async def wait(self, timeout: float) -> None:
        """Until the parser has news for the response; ``timeout`` seconds of silence raise.

        The connection keeps one timer across waits and requests (it is not cancelled when a
        response ends): when it fires it looks at the current wait, if any, and re-arms.
        """
        loop = self._loop
        waiter = self._waiter = loop.create_future()
        now = self._waiting_since = loop.time()
        self.read_timeout = timeout
        timer = self._timer
        if timer is None or timer.when() > now + timeout:
            if timer is not None:
                timer.cancel()
            self._timer = loop.call_at(now + timeout, self._check_timeout)
        try:
            await waiter
        finally:
            self._waiter = None

    def _check_timeout(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        timeout = self.read_timeout
        since = max(self._waiting_since, self._last_data)
        now = self._loop.time()
        if now - since < timeout:
            self._timer = self._loop.call_at(since + timeout, self._check_timeout)
            return
        response = self._response
        phase = "headers" if response is None or not response._headers_done else "body bytes"
        error = httpx.ReadTimeout(f"the upstream sent no {phase} for {timeout:g}s")
        if response is not None:
            response._fail(error)
        self.close()
        waiter.set_result(None)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _connection_ended(self, exc: Exception | None) -> None:
        self.closed = True
        response = self._response
        if response is not None and not response._complete:
            detail = f": {exc}" if exc else ""
            what = "without an answer" if not response._headers_done else "before the end of the body"
            response._fail(httpx.RemoteProtocolError(f"the upstream closed the connection {what}{detail}"))
        self._wake()

    def pause_reading(self) -> None:
        if not self._reading_paused and self._transport is not None:
            self._reading_paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._reading_paused and self._transport is not None:
            self._reading_paused = False
            if not self._transport.is_closing():
                self._transport.resume_reading()

    def release(self) -> None:
        """The response was read to its end: back to the pool for the next request."""
        self._response = None
        self.idle_since = self._loop.time()
        self._on_release(self)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.closed = True
        if self._transport is not None:
            self._transport.close()
