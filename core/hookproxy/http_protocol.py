"""The HTTP/1.1 protocol uvicorn's server runs for each client connection.

uvicorn's own httptools protocol is what this replaces, with the same ASGI behaviour (scope,
``receive``/``send`` messages, keep-alive, pipelining, ``Expect: 100-continue``, flow control in
both directions, 400 on a malformed request, 500 when the app fails before answering, graceful
shutdown through ``shutdown()``), for two reasons:

* **Limits for hostile clients.** httptools has no cap on the request head and no clock on
  receiving it: one client streaming a 200 MB header grew the process by 400 MB and stalled
  every other client, and 20,000 idle sockets used up the file descriptors. Each connection here
  has a cap on the head's bytes (``max_header_bytes``) and headers (``max_header_count``: 431), a
  clock on the head (``header_timeout``, also for a socket that never sends a byte) and on the
  body (``body_timeout``: 408), and the server a cap on connections (``max_connections``: the
  connection idle the longest makes room, else 503).
* **Cost.** In the bench profile uvicorn's protocol and the guards around it were a fifth of the
  proxy's CPU per request: a keep-alive timer scheduled and cancelled per request, an
  ``asyncio.Event`` and a fifteen-field cycle object per request, two calls per header, and the
  answer's head and body written with two system calls. Here one lazily moved clock per
  connection serves every timeout, a request waits on a plain future, and the head leaves with
  the first body bytes in one ``write`` (a streamed head is flushed by the next loop turn when no
  body follows at once, so a waiting stream still gets its headers). Whole answers finished in
  one turn of the event loop after its first are written together at its end
  (``HttpProtocol.cork``).

WebSocket upgrades are not offered (the proxy has no WebSocket route): an ``Upgrade`` request
is served as plain HTTP/1.1, which is what a client must accept from a server that does not
switch. uvicorn's access log is not written; the proxy has its own.
"""

from __future__ import annotations

import asyncio
import http
import logging
import re
import urllib.parse
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httptools
import orjson

from .turn_batch import TurnBatch

if TYPE_CHECKING:
    from .config import Settings

log = logging.getLogger("hookproxy.server")

#: Header names and values uvicorn refuses in an answer (the same expressions).
_BAD_NAME = re.compile(b'[\x00-\x1f\x7f()<>@,;:\\[\\]={} \t\\\\"]')
_BAD_VALUE = re.compile(b"[\x00-\x08\x0a-\x1f\x7f]")
#: The same characters but CR and LF, which a whole head holds at the end of each line.
_BAD_HEAD = re.compile(b"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_FRAMING_HEADERS = frozenset({b"content-length", b"transfer-encoding", b"connection"})
#: Request body bytes buffered before reading from the socket pauses until the app takes them.
_HIGH_WATER = 65536
#: A body part at least this large is written on its own rather than copied behind the head.
_COPY_LIMIT = 65536
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_REASONS = {408: "Request Timeout", 431: "Request Header Fields Too Large", 503: "Service Unavailable"}


def _status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {status} {phrase}\r\n".encode()


_STATUS_LINES = {status: _status_line(status) for status in range(100, 600)}


def error_bytes(status: int, message: str, code: str) -> bytes:
    """A complete ``Connection: close`` HTTP answer with an OpenAI error body."""
    body = orjson.dumps({"error": {"message": message, "type": "invalid_request_error", "param": None,
                                   "code": code}})
    head = (f"HTTP/1.1 {status} {_REASONS[status]}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n")
    if status == 503:
        head += "retry-after: 1\r\n"
    return head.encode() + b"\r\n" + body


#: Answer header names already checked, to their lower-case form (names come from code, so few).
_NAMES: dict[bytes, bytes] = {}
_NAMES_KEPT = 1024


def _checked_name(name: bytes) -> bytes:
    """``name`` in lower case, refused when uvicorn would refuse it; remembered once valid."""
    if not name or _BAD_NAME.search(name):
        raise RuntimeError("Invalid HTTP header name.")
    lowered = name.lower()
    if len(_NAMES) < _NAMES_KEPT:
        _NAMES[name] = lowered
    return lowered


#: The server's default headers (``date``, ``server``) as bytes, for the list they were made from.
_defaults: tuple[object, bytes, int] = (None, b"", 0)


def _default_head(headers: list[tuple[bytes, bytes]]) -> tuple[bytes, int]:
    """The lines, and how many; uvicorn replaces the list each second (a new ``date``): encode
    it once per list."""
    global _defaults
    if _defaults[0] is not headers:
        lines = []
        for name, value in headers:
            if _BAD_VALUE.search(value):
                raise RuntimeError("Invalid HTTP header value.")
            lines.append(_checked_name(name) + b": " + value + b"\r\n")
        _defaults = (headers, b"".join(lines), len(lines))
    return _defaults[1], _defaults[2]


class ConnectionPool:
    """The open connections of one server. Each connection notes when it became idle (a tick of
    this pool, 0 while it serves a request), so marking costs two assignments per request and
    only a connection arriving at the cap looks for the one idle the longest."""

    def __init__(self, on_shutdown: Callable[[], None] | None = None) -> None:
        self.connections: set[HttpProtocol] = set()
        self.tick = 0
        #: Called once when the server starts its graceful shutdown (asks connections to finish).
        self.on_shutdown = on_shutdown
        self.shutting_down = False
        #: Whole answers held to the end of the event loop's turn (see ``HttpProtocol.cork``).
        self.batch = TurnBatch()

    def begin_shutdown(self) -> None:
        if not self.shutting_down:
            self.shutting_down = True
            if self.on_shutdown is not None:
                self.on_shutdown()

    def longest_idle(self) -> HttpProtocol | None:
        idle = [connection for connection in self.connections if connection.idle_since]
        return min(idle, key=lambda connection: connection.idle_since) if idle else None


class Exchange:
    """One request and its answer: the ASGI ``receive`` and ``send`` of one app call."""

    __slots__ = ("protocol", "scope", "transport", "body", "more_body", "pending", "waiter", "keep_alive",
                 "expect_continue", "disconnected", "started", "complete", "chunked", "remaining", "held")

    def __init__(self, protocol: HttpProtocol, scope: dict[str, Any], keep_alive: bool, expect_continue: bool) -> None:
        self.protocol = protocol
        self.scope = scope
        self.transport = protocol.transport
        self.body = b""
        self.more_body = True
        #: Something for ``receive`` to report (body bytes, the body's end, a disconnect).
        self.pending = False
        self.waiter: asyncio.Future[None] | None = None
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.disconnected = False
        self.started = False
        self.complete = False
        self.chunked: bool | None = None
        self.remaining = 0  # answer bytes still due under Content-Length
        self.held = b""  # the answer's head, waiting for its first body bytes

    def wake(self) -> None:
        self.pending = True
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def run(self, app: Callable[..., Any]) -> None:
        """Call the app; answer 500 if it fails before answering, close if it fails after."""
        try:
            await app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            self.protocol.close()  # shutdown's grace period is over
            raise
        except Exception:  # noqa: BLE001 - the server must outlive any app error
            log.exception("Exception in ASGI application")
            if not self.started:
                await self._send_500()
            else:
                self.protocol.close()
        else:
            if not self.started and not self.disconnected:
                log.error("ASGI callable returned without starting response.")
                await self._send_500()
            elif not self.complete and not self.disconnected:
                log.error("ASGI callable returned without completing response.")
                self.protocol.close()

    async def _send_500(self) -> None:
        await self.send({"type": "http.response.start", "status": 500,
                         "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"21"),
                                     (b"connection", b"close")]})
        await self.send({"type": "http.response.body", "body": b"Internal Server Error"})

    # --- receive -----------------------------------------------------------------------------

    async def receive(self) -> dict[str, Any]:
        if self.expect_continue and not self.transport.is_closing():
            self.protocol.write(_CONTINUE)
        self.expect_continue = False
        if not self.disconnected and not self.complete:
            if not self.pending:
                self.protocol.resume_reading()
                waiter = self.waiter
                if waiter is None:
                    waiter = self.waiter = self.protocol.loop.create_future()
                await waiter
            self.pending = False
        if self.disconnected or self.complete:
            return {"type": "http.disconnect"}
        body = self.body
        self.body = b""
        return {"type": "http.request", "body": body, "more_body": self.more_body}

    # --- send --------------------------------------------------------------------------------

    async def send(self, message: Any) -> None:
        protocol = self.protocol
        if protocol.write_paused and not self.disconnected:
            await protocol.drain()
        if self.disconnected:
            return
        kind = message["type"]
        if not self.started:
            if kind != "http.response.start":
                raise RuntimeError(f"Expected ASGI message 'http.response.start', but got '{kind}'.")
            self.started = True
            self.expect_continue = False
            self.held = self._head(message["status"], message.get("headers", ()))
            if self.chunked:
                protocol.loop.call_soon(self._flush_head)
            return
        if self.complete:
            raise RuntimeError(f"Unexpected ASGI message '{kind}' sent, after response already completed.")
        if kind != "http.response.body":
            raise RuntimeError(f"Expected ASGI message 'http.response.body', but got '{kind}'.")
        more_body = message.get("more_body", False)
        self._write_body(message.get("body", b""), more_body)
        if not more_body:
            if self.remaining != 0:
                raise RuntimeError("Response content shorter than Content-Length")
            self.complete = True
            self.wake()
            if not self.keep_alive:
                protocol.close()
            protocol.response_complete(self)

    def _head(self, status: int, headers: Any) -> bytes:
        """The status line and headers; decides the framing (Content-Length, chunked, or none for
        HEAD, 204 and 304) and whether the connection closes after this answer."""
        defaults, lines = _default_head(self.protocol.server_state.default_headers)
        content = [_STATUS_LINES[status], defaults]
        lines += 2  # the status line and the blank line that ends the head
        has_close = False
        for name, value in headers:
            lowered = _NAMES.get(name)
            if lowered is None:
                lowered = _checked_name(name)
            if lowered in _FRAMING_HEADERS:
                if lowered == b"content-length" and self.chunked is None:
                    self.remaining = int(value.decode())
                    self.chunked = False
                elif lowered == b"transfer-encoding" and value.lower() == b"chunked":
                    self.remaining = 0
                    self.chunked = True
                elif lowered == b"connection" and b"close" in [token.lower().strip() for token in value.split(b",")]:
                    self.keep_alive = False
                    has_close = True
            content += (lowered, b": ", value, b"\r\n")
            lines += 1
        if not self.keep_alive and not has_close:
            content.append(b"connection: close\r\n")
            lines += 1
        if self.chunked is None and self.scope["method"] != "HEAD" and status not in (204, 304):
            self.chunked = True
            content.append(b"transfer-encoding: chunked\r\n")
            lines += 1
        content.append(b"\r\n")
        head = b"".join(content)
        # Each line ends with the one CRLF put there above: any other CR or LF, or another control
        # character, came from a value (names were checked on their own).
        if head.count(b"\n") != lines or head.count(b"\r") != lines or _BAD_HEAD.search(head):
            raise RuntimeError("Invalid HTTP header value.")
        return head

    def _write_body(self, body: bytes, more_body: bool) -> None:
        """One body part, framed, behind the held head if that has not left yet."""
        data = self.held
        self.held = b""
        if self.scope["method"] == "HEAD":
            self.remaining = 0
        elif self.chunked:
            if body:
                data += b"%x\r\n%b\r\n" % (len(body), body)
            if not more_body:
                data += b"0\r\n\r\n"
        else:
            if len(body) > self.remaining:
                raise RuntimeError("Response content longer than Content-Length")
            self.remaining -= len(body)
            if len(body) >= _COPY_LIMIT:
                if data:
                    self.protocol.write(data)
                data = body
            else:
                data += body
        if data:
            if more_body or not self.keep_alive:
                self.protocol.write(data)
            else:
                self.protocol.cork(data)  # a whole answer: may wait for the end of this loop turn

    def _flush_head(self) -> None:
        if self.held and not self.disconnected and not self.transport.is_closing():
            self.protocol.write(self.held)
        self.held = b""


class HttpProtocol(asyncio.Protocol):
    """One client connection. Built by uvicorn's server with its configuration and state; a
    subclass made by ``server.protocol_class`` binds ``settings`` and the server's ``pool``."""

    settings: Settings
    pool: ConnectionPool

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        if not config.loaded:
            config.load()
        self.app = config.loaded_app
        self.root_path: str = config.root_path
        self.loop = _loop or asyncio.get_event_loop()
        self.server_state = server_state
        self.app_state = app_state
        self.parser = httptools.HttpRequestParser(self)
        try:  # answer the first of pipelined requests even when the client half-closed after them
            self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        except AttributeError:  # httptools < 0.6.3
            pass
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.server: tuple[str, int] | None = None
        self.client: tuple[str, int] | None = None
        self.scheme = "http"
        self.refused = False
        self.exchange: Exchange | None = None
        self.pipeline: deque[Exchange] = deque()
        self.read_paused = False
        self.write_paused = False
        self._writable: asyncio.Future[None] | None = None
        # The request being parsed.
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.expect_continue = False
        self.in_head = True
        self.head_bytes = 0
        self.idle_since = 0  # the pool tick at which this connection became idle; 0: serving
        # One clock per connection for every timeout, moved lazily: arming records a deadline and
        # keeps the scheduled handle when it fires no later; disarming only forgets the deadline.
        # A request thus costs no timer scheduling or cancelling.
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._deadline: float | None = None
        self._on_deadline: Callable[[], None] = self._close_idle
        self._idle_clock = False  # the clock runs for keep_alive_timeout: any byte stops it
        self.corked = b""  # a whole answer held until the end of this loop turn (see cork)

    # --- the connection ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        pool = self.pool
        if len(pool.connections) >= self.settings.max_connections:
            oldest = pool.longest_idle()
            if oldest is None:
                self.refused = True
                transport.write(error_bytes(503, "the proxy is at its connection limit (max_connections); "
                                                 "retry shortly", "too_many_connections"))
                transport.close()
                return
            pool.connections.discard(oldest)
            oldest.idle_since = 0
            oldest.close()
        pool.connections.add(self)
        self.server_state.connections.add(self)
        server = transport.get_extra_info("sockname")
        self.server = (str(server[0]), int(server[1])) if isinstance(server, tuple) else None
        client = transport.get_extra_info("peername")
        self.client = (str(client[0]), int(client[1])) if isinstance(client, tuple) else None
        self.scheme = "https" if transport.get_extra_info("sslcontext") else "http"
        self._mark_idle()
        self._arm(self.settings.header_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.refused:
            return
        self.pool.connections.discard(self)
        self.server_state.connections.discard(self)
        self.idle_since = 0
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        exchange = self.exchange
        if exchange is not None:
            if not exchange.complete:
                exchange.disconnected = True
            exchange.wake()
        for queued in self.pipeline:
            queued.disconnected = True
        self.resume_writing()
        if exc is None:
            self.transport.close()
        self.parser = None  # type: ignore[assignment]

    def eof_received(self) -> None:
        """A half-closed client still gets its answer (the transport closes after it)."""

    def shutdown(self) -> None:
        """The server is stopping: close an idle connection, let a busy one finish its answer."""
        self.pool.begin_shutdown()
        exchange = self.exchange
        if exchange is None or exchange.complete:
            self.close()
        else:
            exchange.keep_alive = False

    # --- writing ---------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Bytes to the client, after any answer still held (see :meth:`cork`)."""
        if self.corked:
            self.uncork()
        self.transport.write(data)

    def close(self) -> None:
        """Close the connection once any answer still held has been handed to the transport."""
        if self.corked:
            self.uncork()
        self.transport.close()

    def cork(self, data: bytes) -> None:
        """A whole answer (the last write of its request): written now if it is the first of this
        turn of the event loop, else held to the end of the turn (:mod:`hookproxy.turn_batch`).
        Any other write or close on this connection writes a held answer first."""
        if self.corked:
            self.corked += data
        elif self.pool.batch.holds(self):
            self.corked = data
        else:
            self.write(data)

    def uncork(self) -> None:
        data, self.corked = self.corked, b""
        if data and not self.transport.is_closing():
            self.transport.write(data)

    def _mark_idle(self) -> None:
        pool = self.pool
        pool.tick += 1
        self.idle_since = pool.tick

    # --- flow control ------------------------------------------------------------------------

    def pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        writable = self._writable
        if writable is not None:
            self._writable = None
            if not writable.done():
                writable.set_result(None)

    async def drain(self) -> None:
        if self._writable is None:
            self._writable = self.loop.create_future()
        await self._writable

    # --- parsing -----------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._idle_clock:
            self._idle_clock = False
            self._deadline = None
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._upgrade_refused()
        except httptools.HttpParserError:
            if not self.transport.is_closing():
                log.warning("Invalid HTTP request received.")
                self._send_400()
            return
        # The clocks start here rather than in the parser's callbacks: a request that arrived
        # whole (the usual case) needs neither the head's nor the body's.
        if self.in_head:
            self.head_bytes += len(data)
            if self.head_bytes > self.settings.max_header_bytes and not self.transport.is_closing():
                self._reject(431, f"the request head is over the {self.settings.max_header_bytes}-byte limit "
                                  "(max_header_bytes)", "request_header_too_large")
            elif self._deadline is None:
                self._arm(self.settings.header_timeout, self._head_timed_out)
        elif self._deadline is None:
            exchange = self.pipeline[-1] if self.pipeline else self.exchange
            if exchange is not None and exchange.more_body and not exchange.complete:
                self._arm(self.settings.body_timeout, self._body_timed_out)

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.expect_continue = False
        self.in_head = True

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.head_bytes = 0
        self._disarm()
        limit = self.settings.max_header_count
        if len(self.headers) > limit:
            self._reject(431, f"the request has {len(self.headers)} headers; at most {limit} are accepted "
                              "(max_header_count)", "too_many_headers")
            return
        self.idle_since = 0
        parser = self.parser
        http_version = parser.get_http_version()
        url = self.url
        if url[:1] == b"/" and url[:2] != b"//" and b"?" not in url and b"#" not in url:
            raw_path, query = url, b""  # a plain path, the usual request target: nothing to split
        else:
            parsed = httptools.parse_url(url)
            raw_path, query = parsed.path, parsed.query or b""
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        root_path = self.root_path
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": http_version,
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,
            "method": parser.get_method().decode("ascii"),
            "root_path": root_path,
            "path": root_path + path if root_path else path,
            "raw_path": root_path.encode("ascii") + raw_path if root_path else raw_path,
            "query_string": query,
            "headers": self.headers,
            "state": self.app_state.copy(),
        }
        exchange = Exchange(self, scope, http_version != "1.0" and parser.should_keep_alive(),
                            self.expect_continue)
        current = self.exchange
        if current is None or current.complete:
            self._start(exchange)
        else:  # pipelined: waits for the answer before it
            self.pause_reading()
            self.pipeline.append(exchange)

    def _upgrade_refused(self) -> None:
        """An ``Upgrade`` request: served as plain HTTP/1.1 (its body, if any, is not read), and
        the connection closes after the answer, since the parser stops at an upgrade."""
        exchange = self.pipeline[-1] if self.pipeline else self.exchange
        if exchange is not None and not exchange.complete:
            exchange.keep_alive = False
            if exchange.more_body:
                exchange.more_body = False
                exchange.wake()

    def on_body(self, body: bytes) -> None:
        exchange = self.pipeline[-1] if self.pipeline else self.exchange
        if exchange is None or exchange.complete:
            return
        exchange.body += body
        if len(exchange.body) > _HIGH_WATER:
            self.pause_reading()
        exchange.wake()

    def on_message_complete(self) -> None:
        self._disarm()
        exchange = self.pipeline[-1] if self.pipeline else self.exchange
        if exchange is None or exchange.complete:
            return
        exchange.more_body = False
        exchange.wake()

    # --- running the app ---------------------------------------------------------------------

    def _start(self, exchange: Exchange) -> None:
        self.exchange = exchange
        tasks = self.server_state.tasks
        task = self.loop.create_task(exchange.run(self.app))
        task.add_done_callback(tasks.discard)
        tasks.add(task)

    def response_complete(self, exchange: Exchange) -> None:
        """An answer's last byte went out: start the next pipelined request or wait for one."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.in_head = True
        self.resume_reading()
        if self.pipeline:
            self._start(self.pipeline.popleft())
            return
        self._mark_idle()
        self._arm(self.settings.keep_alive_timeout, self._close_idle)
        self._idle_clock = True

    # --- clocks ------------------------------------------------------------------------------

    def _arm(self, seconds: float, callback: Callable[[], None]) -> None:
        deadline = self.loop.time() + seconds
        self._deadline = deadline
        self._on_deadline = callback
        timer = self._timer
        if timer is None or self._timer_at > deadline:
            if timer is not None:
                timer.cancel()
            self._timer_at = deadline
            self._timer = self.loop.call_at(deadline, self._tick)

    def _disarm(self) -> None:
        self._deadline = None

    def _tick(self) -> None:
        """The handle fired: run the callback if its deadline has passed, else wait on for it."""
        self._timer = None
        deadline = self._deadline
        if deadline is None:
            return
        if self.loop.time() < deadline:
            self._timer_at = deadline
            self._timer = self.loop.call_at(deadline, self._tick)
            return
        self._deadline = None
        self._on_deadline()

    def _close_idle(self) -> None:
        """``keep_alive_timeout`` passed with no new request."""
        exchange = self.exchange
        if (exchange is None or exchange.complete) and not self.pipeline and not self.transport.is_closing():
            self.close()

    def _head_timed_out(self) -> None:
        if not self.in_head or self.transport.is_closing():
            return
        if self.head_bytes:
            self._reject(408, f"the request head did not arrive within {self.settings.header_timeout:g}s "
                              "(header_timeout)", "request_timeout")
        else:
            self.close()  # a socket that never sent a byte gets no answer

    def _body_timed_out(self) -> None:
        exchange = self.pipeline[-1] if self.pipeline else self.exchange
        if exchange is None or not exchange.more_body or self.transport.is_closing():
            return
        log.info("closing a connection from %s: its request body did not arrive within %gs", self.client,
                 self.settings.body_timeout)
        if not exchange.started:
            exchange.started = exchange.complete = True  # the app's answer is dropped
            self.write(error_bytes(408, f"the request body did not arrive within "
                                                  f"{self.settings.body_timeout:g}s (body_timeout)",
                                             "request_timeout"))
        exchange.disconnected = True
        exchange.wake()
        self.close()

    def _reject(self, status: int, message: str, code: str) -> None:
        self._disarm()
        self.write(error_bytes(status, message, code))
        self.close()

    def _send_400(self) -> None:
        message = b"Invalid HTTP request received."
        head = [_STATUS_LINES[400]]
        head += (name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers)
        head.append(b"content-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n" % len(message))
        self.write(b"".join(head) + b"connection: close\r\n\r\n" + message)
        self.close()
