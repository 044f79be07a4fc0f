"""A scripted HTTP/1.1 server on 127.0.0.1 that writes exact bytes, for testing the upstream client.

uvicorn (``FakeUpstream``) always frames its answers correctly; the client must also cope with
close-delimited bodies, idle closes, answers that never come and TLS. Each accepted connection
runs ``handler(conn, server)`` in its own thread; the handler reads requests with
:func:`read_request` and writes whatever bytes the test wants.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Callable

Handler = Callable[[socket.socket, "RawServer"], None]


def read_request(conn: socket.socket) -> bytes | None:
    """One request (head and Content-Length body), or None when the client closed first."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = conn.recv(65536)
        if not piece:
            return None
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        piece = conn.recv(65536)
        if not piece:
            return None
        body += piece
    return head + b"\r\n\r\n" + body


def response(body: bytes, status: str = "200 OK", *, content_type: str = "application/json",
             extra: str = "") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
            .encode() + body)


class RawServer:
    """Counts connections and records every request it read (via :meth:`record`)."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.requests: list[bytes] = []
        self.connections = 0
        self.closed_by_client = threading.Event()
        self.lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._open: list[socket.socket] = []
        self._stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def record(self, request: bytes | None) -> bytes | None:
        if request is not None:
            with self.lock:
                self.requests.append(request)
        return request

    def _accept(self) -> None:
        while not self._stopping:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            if self.tls is not None:
                try:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except (OSError, ssl.SSLError):
                    conn.close()
                    continue
            with self.lock:
                self.connections += 1
                self._open.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            self.handler(conn, self)

    def stop(self) -> None:
        self._stopping = True
        self._sock.close()
        with self.lock:
            for conn in self._open:
                with contextlib.suppress(OSError):
                    conn.close()
        for thread in self._threads:
            thread.join(timeout=5)


def wait_for_eof(conn: socket.socket, server: RawServer) -> None:
    """Read until the client closes the connection, then tell the test."""
    while True:
        try:
            if not conn.recv(65536):
                break
        except OSError:
            break
    server.closed_by_client.set()
