"""hookproxy's HTTP/1.1 protocol on its own, serving a small ASGI app: what it writes when the app
answers with headers no HTTP answer may carry (a line break would let a value start a header of
its own, or end the head early), and the order of answers on one connection (a whole answer may be
held to the end of the event loop's turn, and every later byte must still follow it)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from hookproxy.config import Settings
from hookproxy.server import protocol_class
from hookproxy.testing import serve_app


async def app(scope, receive, send):  # noqa: ANN001, ANN201 - a bare ASGI app
    if scope["type"] != "http":
        return
    if scope["path"].startswith("/echo"):  # the path and the body, back
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        answer = scope["path"].encode() + b":" + body
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(answer)).encode())]})
        await send({"type": "http.response.body", "body": answer})
        return
    value = {"/ok": b"fine", "/crlf": b"a\r\nx-injected: 1", "/lf": b"a\nx-injected: 1", "/nul": b"a\x00b",
             "/tab": b"a\tb"}[scope["path"]]
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"X-Value", value), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    served = serve_app(app, http=protocol_class(Settings()))
    yield served.url
    served.stop()


@pytest.mark.parametrize("path", ["/ok", "/tab"])
def test_a_valid_header_value_is_sent_as_is(url: str, path: str) -> None:
    response = httpx.get(url + path)
    assert response.status_code == 200
    assert response.text == "ok"
    assert response.headers["x-value"] == {"/ok": "fine", "/tab": "a\tb"}[path]  # names go out lower-case


@pytest.mark.parametrize("path", ["/crlf", "/lf", "/nul"])
def test_a_header_value_with_a_control_character_never_reaches_the_client(url: str, path: str) -> None:
    with pytest.raises(httpx.RemoteProtocolError):  # the connection closes with no answer written
        httpx.get(url + path)
    assert httpx.get(url + "/ok").status_code == 200  # and the server goes on serving


def _read_answers(sock: socket.socket, count: int) -> list[bytes]:
    """``count`` answers with Content-Length bodies, in the order they came (their bodies)."""
    data = b""
    bodies: list[bytes] = []
    while len(bodies) < count:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"the connection closed after {len(bodies)} answers"
            data += chunk
        head, _, data = data.partition(b"\r\n\r\n")
        if head.startswith(b"HTTP/1.1 100"):
            bodies.append(b"100 Continue")
            continue
        lengths = [line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")]
        length = int(lengths[0])
        while len(data) < length:
            data += sock.recv(65536)
        bodies.append(data[:length])
        data = data[length:]
    return bodies


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def test_pipelined_requests_are_answered_in_order(url: str) -> None:
    requests = b"".join(b"POST /echo/%d HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n%d" % (n, n) for n in range(5))
    with _connect(url) as sock:
        sock.sendall(requests)
        assert _read_answers(sock, 5) == [b"/echo/%d:%d" % (n, n) for n in range(5)]


def test_a_100_continue_waits_behind_the_answer_before_it(url: str) -> None:
    """The interim 100 of the next pipelined request, written on the same connection, comes
    after the whole answer before it, never before."""
    with _connect(url) as sock:
        sock.sendall(b"POST /echo/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\na"
                     b"POST /echo/2 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\n")
        assert _read_answers(sock, 2) == [b"/echo/1:a", b"100 Continue"]
        sock.sendall(b"b")
        assert _read_answers(sock, 1) == [b"/echo/2:b"]
