"""The HTTP server against hostile clients, through the real CLI and raw sockets: request heads
and bodies are capped and clocked, connections are capped, and X-Forwarded-For is believed only
from trusted proxies. (Latency under a flood is measured by ``bench/flood.py``, not here.)"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from hookproxy.testing import run_cli_proxy
from tests.conftest import PROXY_KEY, upstream_block

CORE_ONLY = {"HOOKPROXY_DISABLE_PLUGINS": "qwen-oauth,hybrid"}
USER = [{"role": "user", "content": "hello"}]


@pytest.fixture
def cli_proxy(fake_upstream, write_config):
    """``cli_proxy(*flags)``: the CLI proxy (key PROXY_KEY) in front of the fake upstream."""
    path = write_config({"default_backend": "up", "backends": {"up": upstream_block(fake_upstream)}})
    started = []

    def start(*flags: str) -> str:
        context = run_cli_proxy("--config", str(path), "--api-key", PROXY_KEY, *flags, env=CORE_ONLY)
        url, _process = context.__enter__()
        started.append(context)
        return url

    yield start
    for context in started:
        context.__exit__(None, None, None)


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def read_answer(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection (or 10 s pass)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return data


def healthy(url: str) -> bool:
    return httpx.get(url + "/health", timeout=5).status_code == 200


def test_a_huge_request_head_is_a_431_and_others_are_served(cli_proxy):
    url = cli_proxy()  # the default limit, 64 KiB
    with connect(url) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent = 0
        try:
            while sent < 50 * 1024 * 1024:
                sock.sendall(b"a" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_answer(sock)
    assert sent < 50 * 1024 * 1024  # the server stopped reading long before
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b"max_header_bytes" in answer
    assert healthy(url)


def test_too_many_headers_is_a_431(cli_proxy):
    url = cli_proxy()  # the default limit, 100
    headers = "".join(f"x-h{index}: v\r\n" for index in range(150))
    with connect(url) as sock:
        sock.sendall(f"GET /health HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
        answer = read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b"max_header_count" in answer
    with connect(url) as sock:  # at the limit is fine
        few = "".join(f"x-h{index}: v\r\n" for index in range(98))
        sock.sendall(f"GET /health HTTP/1.1\r\nHost: x\r\n{few}connection: close\r\n\r\n".encode())
        assert read_answer(sock).startswith(b"HTTP/1.1 200 ")


def test_slow_heads_and_bodies_get_408_and_silent_sockets_are_closed(cli_proxy):
    url = cli_proxy("--header-timeout", "1", "--body-timeout", "1")
    with connect(url) as slow_head, connect(url) as slow_body, connect(url) as silent:
        slow_head.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        slow_body.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {PROXY_KEY}\r\n"
                          "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"model\":".encode())
        assert healthy(url)  # others are served meanwhile
        head_answer, body_answer, silent_answer = read_answer(slow_head), read_answer(slow_body), read_answer(silent)
    assert head_answer.startswith(b"HTTP/1.1 408 ") and b"header_timeout" in head_answer
    assert body_answer.startswith(b"HTTP/1.1 408 ") and b"body_timeout" in body_answer
    assert silent_answer == b""  # closed, not left open forever


def test_idle_keep_alive_connections_close_after_the_keep_alive_timeout(cli_proxy):
    url = cli_proxy("--keep-alive-timeout", "1")
    with connect(url) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        answer = read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert time.monotonic() - started < 9  # closed by the server, not by read_answer's 10 s timeout


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def test_at_the_connection_cap_idle_connections_make_room_and_busy_ones_mean_503(cli_proxy, sockets):
    url = cli_proxy("--max-connections", "4", "--body-timeout", "30")
    sockets.extend(connect(url) for _ in range(4))  # idle: no request yet
    time.sleep(0.3)
    assert healthy(url)  # room was made by closing the connection idle the longest
    assert read_answer(sockets[0]) == b""
    for sock in sockets[1:]:  # the others become busy: a request whose body has not arrived
        sock.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {PROXY_KEY}\r\n"
                     "Content-Length: 100\r\n\r\n".encode())
    sockets.append(connect(url))  # the fourth slot, taken by the connection healthy() closed
    sockets[-1].sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {PROXY_KEY}\r\n"
                        "Content-Length: 100\r\n\r\n".encode())
    time.sleep(0.3)
    with connect(url) as refused:
        answer = read_answer(refused)
    assert answer.startswith(b"HTTP/1.1 503 "), answer[:200]
    assert b"max_connections" in answer and b"retry-after: 1" in answer.lower()


def _bad_key(url: str, forwarded_for: str) -> int:
    response = httpx.post(url + "/v1/chat/completions", json={"model": "m1", "messages": USER}, timeout=10,
                          headers={"authorization": "Bearer wrong", "x-forwarded-for": forwarded_for})
    return response.status_code


def test_x_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(cli_proxy):
    url = cli_proxy()
    statuses = [_bad_key(url, f"203.0.113.{index}") for index in range(8)]
    assert statuses == [401] * 5 + [429] * 3  # one address: the loopback peer, whatever the header says
    good = httpx.post(url + "/v1/chat/completions", json={"model": "m1", "messages": USER}, timeout=10,
                      headers={"authorization": f"Bearer {PROXY_KEY}", "x-forwarded-for": "203.0.113.1"})
    assert good.status_code == 200


def test_a_trusted_proxy_s_x_forwarded_for_names_the_client(cli_proxy):
    url = cli_proxy("--trusted-proxy", "127.0.0.0/8")
    assert [_bad_key(url, f"203.0.113.{index}") for index in range(8)] == [401] * 8
    assert [_bad_key(url, "198.51.100.7") for _ in range(6)] == [401] * 5 + [429]
