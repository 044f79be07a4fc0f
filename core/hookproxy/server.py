"""The HTTP server: uvicorn, configured for hostile clients, plus the limits uvicorn lacks.

uvicorn's fast parser (httptools) has no cap on the request head and no clock on receiving it:
one client streaming a 200 MB header grew the process by 400 MB and stalled every other client
(httptools joins the pieces of a header value over and over), and 20,000 idle sockets used up the
file descriptors. :class:`GuardedHttpProtocol` adds, per connection:

* a cap on the bytes of the request head (``max_header_bytes``) and on its header count
  (``max_header_count``): 431 and the connection is closed;
* a clock on receiving the head (``header_timeout``, also for a socket that never sends a
  byte) and the body (``body_timeout``): 408 and the connection is closed;
* a cap on open connections (``max_connections``): at the cap, the connection idle the longest
  (no request being served) is closed to make room; with none idle, the new one gets 503.

Idle keep-alive connections close after ``keep_alive_timeout`` (uvicorn's own timer).
Each answer leaves in as few writes as it can (:class:`OneWriteCycle`): a system call is the
largest single cost of a proxied request.
``X-Forwarded-For`` is believed only from ``trusted_proxies`` (uvicorn's proxy headers are off
without them), so a client cannot pick the address the bad-key throttle sees.
"""

from __future__ import annotations

import asyncio
import logging
import math
import resource
import socket
from typing import Any

import httptools
import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from .config import Settings
from .proxy import Proxy

log = logging.getLogger("hookproxy.server")

#: File descriptors kept free for upstream connections, log files and the like.
_SPARE_FDS = 64

_REASONS = {408: "Request Timeout", 431: "Request Header Fields Too Large", 503: "Service Unavailable"}


def error_bytes(status: int, message: str, code: str) -> bytes:
    """A complete ``Connection: close`` HTTP answer with an OpenAI error body."""
    body = orjson.dumps({"error": {"message": message, "type": "invalid_request_error", "param": None,
                                   "code": code}})
    head = (f"HTTP/1.1 {status} {_REASONS[status]}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n")
    if status == 503:
        head += "retry-after: 1\r\n"
    return head.encode() + b"\r\n" + body


_FRAMING_HEADERS = frozenset({b"content-length", b"transfer-encoding", b"connection"})
#: A body at least this large is written on its own rather than copied behind the head.
_COPY_LIMIT = 65536


class OneWriteCycle(RequestResponseCycle):
    """uvicorn's request cycle, but the response head waits for the first body bytes and leaves
    with them in one write.

    uvicorn writes the status line and headers as soon as ``http.response.start`` arrives, then
    each body part: two ``write`` system calls for every JSON answer, and in the bench profile
    each write cost about as much as all of the proxy's own Python per request. A streamed
    (chunked) head is still sent by the next turn of the event loop when no body follows at once,
    so a stream that waits for its first event does not keep its headers from the client.
    Framing and checks are uvicorn's: ``Content-Length`` or chunked, HEAD, 204/304, ``Connection:
    close``, invalid header bytes refused. uvicorn's access log is never on here (the proxy has
    its own), so it is not written.
    """

    held = b""

    async def send(self, message: Any) -> None:
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected:
            return
        kind = message["type"]
        if not self.response_started:
            if kind != "http.response.start":
                raise RuntimeError(f"Expected ASGI message 'http.response.start', but got '{kind}'.")
            self.response_started = True
            self.waiting_for_100_continue = False
            self.held = self._head(message["status"], message.get("headers", ()))
            if self.chunked_encoding:
                asyncio.get_running_loop().call_soon(self._flush_head)
            return
        if self.response_complete:
            raise RuntimeError(f"Unexpected ASGI message '{kind}' sent, after response already completed.")
        if kind != "http.response.body":
            raise RuntimeError(f"Expected ASGI message 'http.response.body', but got '{kind}'.")
        more_body = message.get("more_body", False)
        self._write_body(message.get("body", b""), more_body)
        if not more_body:
            if self.expected_content_length != 0:
                raise RuntimeError("Response content shorter than Content-Length")
            self.response_complete = True
            self.message_event.set()
            if not self.keep_alive:
                self.transport.close()
            self.on_response()

    def _write_body(self, body: bytes, more_body: bool) -> None:
        """One body part, framed, behind the held head if it has not left yet."""
        data = self.held
        self.held = b""
        if self.scope["method"] == "HEAD":
            self.expected_content_length = 0
        elif self.chunked_encoding:
            if body:
                data += b"%x\r\n%b\r\n" % (len(body), body)
            if not more_body:
                data += b"0\r\n\r\n"
        else:
            if len(body) > self.expected_content_length:
                raise RuntimeError("Response content longer than Content-Length")
            self.expected_content_length -= len(body)
            if len(body) >= _COPY_LIMIT:
                if data:
                    self.transport.write(data)
                data = body
            else:
                data += body
        if data:
            self.transport.write(data)

    def _head(self, status: int, headers: Any) -> bytes:
        """The status line and headers, with uvicorn's framing decisions and header checks."""
        headers = [*self.default_headers, *headers]
        names, values = zip(*headers, strict=True) if headers else ((), ())
        if HEADER_RE.search(b"".join(names)):
            raise RuntimeError("Invalid HTTP header name.")
        if HEADER_VALUE_RE.search(b"".join(values)):
            raise RuntimeError("Invalid HTTP header value.")
        content = [STATUS_LINE[status]]
        has_connection_close = False
        for name, value in headers:
            name = name.lower()
            if name in _FRAMING_HEADERS:
                if name == b"content-length" and self.chunked_encoding is None:
                    self.expected_content_length = int(value.decode())
                    self.chunked_encoding = False
                elif name == b"transfer-encoding" and value.lower() == b"chunked":
                    self.expected_content_length = 0
                    self.chunked_encoding = True
                elif name == b"connection" and b"close" in [token.lower().strip() for token in value.split(b",")]:
                    self.keep_alive = False
                    has_connection_close = True
            content += (name, b": ", value, b"\r\n")
        if not self.keep_alive and not has_connection_close:
            content.append(b"connection: close\r\n")
        if self.chunked_encoding is None and self.scope["method"] != "HEAD" and status not in (204, 304):
            self.chunked_encoding = True
            content.append(b"transfer-encoding: chunked\r\n")
        content.append(b"\r\n")
        return b"".join(content)

    def _flush_head(self) -> None:
        if self.held and not self.disconnected and not self.transport.is_closing():
            self.transport.write(self.held)
        self.held = b""


class _Pool:
    """The open connections of one server. Each connection notes when it became idle (a tick of
    this pool, 0 while it serves a request), so marking costs two assignments per request and
    only a connection arriving at the cap looks for the one idle the longest."""

    def __init__(self) -> None:
        self.connections: set[GuardedHttpProtocol] = set()
        self.tick = 0

    def longest_idle(self) -> GuardedHttpProtocol | None:
        idle = [connection for connection in self.connections if connection.idle_since]
        return min(idle, key=lambda connection: connection.idle_since) if idle else None


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with head/body caps and clocks and a connection cap."""

    settings: Settings
    pool: _Pool

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refused = False
        self._in_head = True
        self._head_bytes = 0
        self.idle_since = 0  # the pool tick at which this connection became idle; 0: serving
        # One clock per connection, moved lazily: arming records a deadline and reuses the
        # scheduled handle when it fires no later; disarming only forgets the deadline. A request
        # thus costs no timer scheduling or cancelling (the handle wakes once per timeout period).
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._deadline: float | None = None
        self._on_deadline: Any = None

    # --- connections ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        pool = self.pool
        if len(pool.connections) >= self.settings.max_connections:
            oldest = pool.longest_idle()
            if oldest is not None:
                pool.connections.discard(oldest)
                oldest.idle_since = 0
                oldest.transport.close()
            else:
                self._refused = True
                self.transport = transport
                transport.write(error_bytes(503, "the proxy is at its connection limit (max_connections); "
                                                 "retry shortly", "too_many_connections"))
                transport.close()
                return
        pool.connections.add(self)
        super().connection_made(transport)
        self._set_idle()
        self._arm(self.settings.header_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            return
        self.pool.connections.discard(self)
        self.idle_since = 0
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def _set_idle(self) -> None:
        pool = self.pool
        pool.tick += 1
        self.idle_since = pool.tick

    # --- the request head ----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            if not self.transport.is_closing():
                msg = "Invalid HTTP request received."
                self.logger.warning(msg)
                self.send_400_response(msg)
            return
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > self.settings.max_header_bytes and not self.transport.is_closing():
                self._reject(431, f"the request head is over the {self.settings.max_header_bytes}-byte limit "
                                  "(max_header_bytes)", "request_header_too_large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        if self._deadline is None:
            self._arm(self.settings.header_timeout, self._head_timed_out)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._disarm()
        limit = self.settings.max_header_count
        count = len(self.headers)  # uvicorn's on_header collected them (the head's size is capped)
        if count > limit:
            self._reject(431, f"the request has {count} headers; at most {limit} are accepted "
                              "(max_header_count)", "too_many_headers")
            return
        self.idle_since = 0
        self._arm(self.settings.body_timeout, self._body_timed_out)
        super().on_headers_complete()
        cycle = self.cycle
        if type(cycle) is RequestResponseCycle:
            # uvicorn builds its own cycle class here; give this one our send (no new state).
            cycle.__class__ = OneWriteCycle

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._set_idle()
        self._in_head = True

    # --- clocks ------------------------------------------------------------------------------

    def _arm(self, seconds: float, callback: Any) -> None:
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

    def _head_timed_out(self) -> None:
        if not self._in_head or self.transport.is_closing():
            return
        if self._head_bytes:
            self._reject(408, f"the request head did not arrive within {self.settings.header_timeout:g}s "
                              "(header_timeout)", "request_timeout")
        else:
            self.transport.close()  # a socket that never sent a byte gets no answer

    def _body_timed_out(self) -> None:
        cycle = self.cycle
        if cycle is None or not cycle.more_body or self.transport.is_closing():
            return
        log.info("closing a connection from %s: its request body did not arrive within %gs", self.client,
                 self.settings.body_timeout)
        if not cycle.response_started:
            cycle.response_started = cycle.response_complete = True  # the app's answer is dropped
            self.transport.write(error_bytes(408, f"the request body did not arrive within "
                                                  f"{self.settings.body_timeout:g}s (body_timeout)",
                                             "request_timeout"))
        cycle.disconnected = True
        cycle.message_event.set()
        self.transport.close()

    def _reject(self, status: int, message: str, code: str) -> None:
        self._disarm()
        self.transport.write(error_bytes(status, message, code))
        self.transport.close()


def protocol_class(settings: Settings) -> type[GuardedHttpProtocol]:
    """A protocol class bound to ``settings`` and to a fresh connection pool (one per server)."""
    return type("BoundGuardedHttpProtocol", (GuardedHttpProtocol,), {"settings": settings, "pool": _Pool()})


def raise_fd_limit(settings: Settings) -> None:
    """Lift the soft file-descriptor limit so ``max_connections`` clients and their upstream
    connections fit; warn when the hard limit is too low for that."""
    wanted = 2 * settings.max_connections + _SPARE_FDS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted or soft == resource.RLIM_INFINITY:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        target = soft
    if target < wanted:
        log.warning("the file descriptor limit (%d) is below what max_connections=%d needs (%d); "
                    "raise it with ulimit -n or lower max_connections", target, settings.max_connections, wanted)


def uvicorn_config(app: Any, proxy: Proxy, port: int | None = None) -> uvicorn.Config:
    """uvicorn's configuration for serving ``app`` with the proxy's limits."""
    settings = proxy.settings
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port if port is None else port,
        loop="auto",
        http=protocol_class(settings),
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_keep_alive=max(1, math.ceil(settings.keep_alive_timeout)),
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=list(settings.trusted_proxies),
        server_header=False,
        # SIGTERM: stop accepting, let in-flight requests and streams finish within the grace
        # period, then end the streams still running with an error event (Proxy.end_streams) and
        # give them a moment to flush before uvicorn cancels what is left.
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_period) + 2,
    )


class Server(uvicorn.Server):
    """uvicorn's server that ends the proxy's streams when the shutdown grace period is over."""

    def __init__(self, config: uvicorn.Config, proxy: Proxy) -> None:
        super().__init__(config)
        self.proxy = proxy

    async def shutdown(self, sockets: Any = None) -> None:
        ender = asyncio.get_running_loop().call_later(self.proxy.settings.shutdown_grace_period,
                                                      self.proxy.end_streams)
        try:
            await super().shutdown(sockets)
        finally:
            ender.cancel()


def serve(app: Any, proxy: Proxy, sock: socket.socket) -> None:
    """Serve ``app`` on the already bound ``sock`` (the CLI binds first to report a busy port)."""
    raise_fd_limit(proxy.settings)
    Server(uvicorn_config(app, proxy, sock.getsockname()[1]), proxy).run(sockets=[sock])
