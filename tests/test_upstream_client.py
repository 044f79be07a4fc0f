"""The native upstream client (asyncio + httptools) against real servers on loopback.

Each server writes exact bytes (``tests/raw_http_server.py``), so framing, idle closes, slow
answers and TLS are what a real upstream would send. The last tests go through a running proxy
with the OpenAI SDK, as a user would.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest
import trustme

from hookproxy.h1_connection import HIGH_WATER
from hookproxy.testing import chat_completion
from hookproxy.transport import AiohttpTransport
from hookproxy.upstream_pool import NativeUpstreamClient, make_ssl_context
from tests.conftest import PROXY_KEY, core_pm
from tests.raw_http_server import RawServer, read_request, response, wait_for_eof

BODY = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'
HEADERS = {"content-type": "application/json", "authorization": "Bearer k"}


@pytest.fixture
def raw_server() -> Iterator[Callable[..., RawServer]]:
    servers: list[RawServer] = []

    def start(handler: Callable[[socket.socket, RawServer], None], **kwargs: Any) -> RawServer:
        server = RawServer(handler, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
async def client() -> Any:
    native = NativeUpstreamClient()
    yield native
    await native.aclose()


@pytest.fixture(params=["native", "aiohttp"])
async def either_client(request: pytest.FixtureRequest) -> Any:
    """The native client, or the aiohttp fallback (``--upstream-client aiohttp``)."""
    upstream = NativeUpstreamClient() if request.param == "native" else AiohttpTransport()
    yield upstream
    await upstream.aclose()


def keep_alive(answer: bytes) -> Callable[[socket.socket, RawServer], None]:
    def handler(conn: socket.socket, server: RawServer) -> None:
        while server.record(read_request(conn)) is not None:
            conn.sendall(answer)

    return handler


async def test_fixed_length_answers_reuse_one_connection(raw_server, client):
    server = raw_server(keep_alive(response(b'{"ok":1}', extra="X-Extra: a\r\n")))
    for _ in range(3):
        answer = await client.open("POST", server.url + "/v1/chat/completions", HEADERS, BODY, 10)
        assert (answer.status, answer.reason) == (200, "OK")
        assert answer.headers["x-extra"] == "a" and answer.headers.get("Content-Type") == "application/json"
        assert await answer.read() == b'{"ok":1}'
    assert server.connections == 1
    head = server.requests[0].split(b"\r\n\r\n")[0].split(b"\r\n")
    assert head[0] == b"POST /v1/chat/completions HTTP/1.1"
    assert f"Host: 127.0.0.1:{server.port}".encode() in head
    assert b"authorization: Bearer k" in head and f"Content-Length: {len(BODY)}".encode() in head
    assert server.requests[0].endswith(BODY)


async def test_a_chunked_answer_is_relayed_chunk_by_chunk(raw_server, client):
    first_seen = threading.Event()

    def handler(conn: socket.socket, server: RawServer) -> None:
        server.record(read_request(conn))
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"d\r\ndata: first\n\n\r\n")
        first_seen.wait(10)  # the second event is only sent once the client has the first one
        conn.sendall(b"e\r\ndata: second\n\n\r\n0\r\n\r\n")
        if server.record(read_request(conn)) is not None:
            conn.sendall(response(b"{}"))

    server = raw_server(handler)
    answer = await client.open("POST", server.url + "/v1/chat/completions", HEADERS, BODY, 10)
    received = []
    async for chunk in answer.chunks():
        received.append(chunk)
        first_seen.set()
    assert received == [b"data: first\n\n", b"data: second\n\n"]
    again = await client.open("POST", server.url + "/v1/chat/completions", HEADERS, BODY, 10)
    assert again.status == 200 and server.connections == 1  # read to its end: the socket was reused


async def test_a_close_delimited_answer_ends_with_the_connection(raw_server, client):
    def handler(conn: socket.socket, server: RawServer) -> None:
        server.record(read_request(conn))
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nall of ")
        conn.sendall(b"the body")

    server = raw_server(handler)
    for _ in range(2):
        answer = await client.open("POST", server.url + "/x", HEADERS, BODY, 10)
        assert await answer.read() == b"all of the body"
    assert server.connections == 2  # never reused


async def test_a_body_cut_before_its_content_length_is_an_error(raw_server, client):
    def handler(conn: socket.socket, server: RawServer) -> None:
        server.record(read_request(conn))
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")

    server = raw_server(handler)
    answer = await client.open("POST", server.url + "/x", HEADERS, BODY, 10)
    with pytest.raises(httpx.RemoteProtocolError, match="before the end of the body"):
        await answer.read()


async def test_an_idle_connection_closed_by_the_upstream_is_replaced_before_sending(raw_server, either_client):
    client = either_client
    closed = threading.Event()

    def handler(conn: socket.socket, server: RawServer) -> None:
        if server.record(read_request(conn)) is None:
            return
        conn.sendall(response(b"{}"))
        if server.connections == 1:
            conn.shutdown(socket.SHUT_RDWR)  # the upstream's keep-alive timeout fired
            closed.set()
            return
        while server.record(read_request(conn)) is not None:
            conn.sendall(response(b"{}"))

    server = raw_server(handler)
    answer = await client.open("POST", server.url + "/x", HEADERS, BODY, 10)
    await answer.read()
    assert closed.wait(10)
    time.sleep(0.5)  # block the loop: the close has reached the socket but not the event loop
    answer = await client.open("POST", server.url + "/x", HEADERS, BODY, 10)
    assert await answer.read() == b"{}"
    assert server.connections == 2
    assert len(server.requests) == 2  # the second request went out exactly once


@pytest.mark.parametrize("parallel", [1, 3])
async def test_a_pooled_connection_reset_just_now_is_replaced_and_the_request_sent_once(
    raw_server, either_client, parallel
):
    """The upstream resets its sockets right after an answer; the next requests come sooner than a
    pooled socket is polled, so each is written to a dead socket (the first of the loop's turn at
    once, the others when the turn is over): the kernel takes no byte, and each goes out once, on
    a new socket."""
    client = either_client
    go_reset = threading.Event()
    resets_done = threading.Barrier(parallel + 1)

    def handler(conn: socket.socket, server: RawServer) -> None:
        if server.record(read_request(conn)) is None:
            return
        conn.sendall(response(b"{}"))
        if server.connections <= parallel:
            go_reset.wait(10)  # once the client has read every answer and pooled the sockets
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()  # a reset, not a polite close
            resets_done.wait(10)
            return
        while server.record(read_request(conn)) is not None:
            conn.sendall(response(b"{}"))

    async def one() -> bytes:
        answer = await client.open("POST", server.url + "/x", HEADERS, BODY, 10)
        return await answer.read()

    server = raw_server(handler)
    assert await asyncio.gather(*(one() for _ in range(parallel))) == [b"{}"] * parallel
    go_reset.set()
    resets_done.wait(10)
    time.sleep(0.1)  # the resets reached the sockets, not yet the event loop (blocked here)
    assert await asyncio.gather(*(one() for _ in range(parallel))) == [b"{}"] * parallel
    assert server.connections == 2 * parallel
    assert len(server.requests) == 2 * parallel  # each request of the second round went out exactly once


async def test_a_request_the_upstream_read_is_never_sent_again(raw_server, client):
    def handler(conn: socket.socket, server: RawServer) -> None:
        server.record(read_request(conn))  # read it, then drop the connection without an answer

    server = raw_server(handler)
    with pytest.raises(httpx.RemoteProtocolError, match="without an answer"):
        await client.open("POST", server.url + "/x", HEADERS, BODY, 10)
    assert len(server.requests) == 1 and server.connections == 1


async def test_slow_headers_time_out(raw_server, client):
    release = threading.Event()

    def handler(conn: socket.socket, server: RawServer) -> None:
        server.record(read_request(conn))
        release.wait(10)

    server = raw_server(handler)
    try:
        with pytest.raises(httpx.ReadTimeout, match="no headers"):
            await client.open("POST", server.url + "/x", HEADERS, BODY, 0.2)
    finally:
        release.set()


async def test_a_silent_stream_times_out_between_chunks(raw_server, client):
    release = threading.Event()

    def handler(conn: socket.socket, server: RawServer) -> None:
        server.record(read_request(conn))
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        release.wait(10)

    server = raw_server(handler)
    answer = await client.open("POST", server.url + "/x", HEADERS, BODY, 0.2)
    chunks = answer.chunks()
    assert await anext(chunks) == b"abc"
    try:
        with pytest.raises(httpx.ReadTimeout, match="no body bytes"):
            await anext(chunks)
    finally:
        release.set()


async def test_a_500_with_a_large_body_is_read_whole(raw_server, client):
    big = b'{"error":{"message":"' + b"x" * (3 * 1024 * 1024) + b'"}}'
    server = raw_server(keep_alive(response(big, "500 Internal Server Error")))
    answer = await client.open("POST", server.url + "/x", HEADERS, BODY, 10)
    assert answer.status == 500
    assert await answer.read() == big


async def test_reading_pauses_while_the_consumer_does_not_read(raw_server, client):
    payload = bytes(range(256)) * (32 * 1024)  # 8 MiB, far above the buffer limit

    def handler(conn: socket.socket, server: RawServer) -> None:
        server.record(read_request(conn))
        conn.sendall(b"HTTP/1.1 200 OK\r\n" + f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)

    server = raw_server(handler)
    answer = await client.open("POST", server.url + "/x", HEADERS, BODY, 10)
    chunks = answer.chunks()
    received = [await anext(chunks)]
    for _ in range(1000):  # let the socket fill the buffer until reading is paused
        if answer._connection._reading_paused:
            break
        await asyncio.sleep(0.005)
    assert answer._connection._reading_paused
    assert answer._buffered <= HIGH_WATER + 256 * 1024
    received.extend([chunk async for chunk in chunks])
    assert hashlib.sha256(b"".join(received)).digest() == hashlib.sha256(payload).digest()


async def test_closing_a_response_early_closes_the_upstream_connection(raw_server, client):
    def handler(conn: socket.socket, server: RawServer) -> None:
        server.record(read_request(conn))
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        wait_for_eof(conn, server)

    server = raw_server(handler)
    answer = await client.open("POST", server.url + "/x", HEADERS, BODY, 10)
    assert await anext(answer.chunks()) == b"first"
    await answer.aclose()
    assert await asyncio.to_thread(server.closed_by_client.wait, 10)


async def test_the_pool_limit_makes_requests_wait_for_a_connection(raw_server):
    server = raw_server(keep_alive(response(b"{}")))
    limited = NativeUpstreamClient(max_connections_per_host=1)
    try:
        async def one() -> bytes:
            answer = await limited.open("POST", server.url + "/x", HEADERS, BODY, 10)
            return await answer.read()

        assert await asyncio.gather(one(), one(), one()) == [b"{}"] * 3
        assert server.connections == 1
    finally:
        await limited.aclose()


async def test_idle_connections_expire(raw_server):
    def handler(conn: socket.socket, server: RawServer) -> None:
        server.record(read_request(conn))
        conn.sendall(response(b"{}"))
        wait_for_eof(conn, server)

    server = raw_server(handler)
    expiring = NativeUpstreamClient(keepalive_expiry=0.05)
    try:
        answer = await expiring.open("POST", server.url + "/x", HEADERS, BODY, 10)
        await answer.read()
        assert await asyncio.to_thread(server.closed_by_client.wait, 10)
    finally:
        await expiring.aclose()


async def test_connection_errors_are_httpx_errors(client):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(httpx.ConnectError, match=f"127.0.0.1:{port}"):
            await client.open("POST", f"http://127.0.0.1:{port}/x", HEADERS, BODY, 10)
    with pytest.raises(httpx.UnsupportedProtocol):
        await client.open("POST", "ftp://127.0.0.1/x", HEADERS, BODY, 10)
    with pytest.raises(httpx.LocalProtocolError, match="line break"):
        await client.open("POST", "http://127.0.0.1:9/x", {"x-bad": "a\r\nInjected: 1"}, BODY, 10)


# --- TLS and the whole proxy -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def tls_chat_server(raw_server: Callable[..., RawServer], ca: trustme.CA) -> RawServer:
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    return raw_server(keep_alive(response(orjson.dumps(chat_completion("over tls")))), tls=server_context)


async def test_tls_verifies_the_certificate_against_the_ca_bundle(raw_server, ca, tmp_path):
    server = tls_chat_server(raw_server, ca)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    trusting = NativeUpstreamClient(ssl_context=make_ssl_context(str(bundle)))
    try:
        answer = await trusting.open("POST", server.url + "/v1/chat/completions", HEADERS, BODY, 10)
        assert b"over tls" in await answer.read()
    finally:
        await trusting.aclose()
    strict = NativeUpstreamClient()
    try:
        with pytest.raises(httpx.ConnectError, match="not trusted.*ca_bundle"):
            await strict.open("POST", server.url + "/v1/chat/completions", HEADERS, BODY, 10)
    finally:
        await strict.aclose()


def test_the_ca_bundle_setting_lets_the_proxy_reach_a_private_tls_upstream(raw_server, ca, tmp_path, write_config,
                                                                            make_proxy):
    server = tls_chat_server(raw_server, ca)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    config = write_config({"default_backend": "tls", "auth": {"api_keys": [PROXY_KEY]}, "backends": {
        "tls": {"connector": "openai-compatible", "api_url": server.url + "/v1", "api_key": "k"}}})
    for cli in ({"ca_bundle": str(bundle)}, {"ca_bundle": str(bundle), "upstream_client": "aiohttp"}):
        running = make_proxy(config, cli, pm=core_pm())
        sdk = openai.OpenAI(base_url=running.url + "/v1", api_key=PROXY_KEY, max_retries=0)
        reply = sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content == "over tls"
    running = make_proxy(config, {"min_retry_wait": 0.01}, pm=core_pm())
    sdk = openai.OpenAI(base_url=running.url + "/v1", api_key=PROXY_KEY, max_retries=0)
    with pytest.raises(openai.APIStatusError) as error:
        sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert error.value.status_code == 502
