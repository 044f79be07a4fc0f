"""Hostile client input gets a clean 4xx before any upstream I/O, never a 500 or a dropped
connection; names in response headers are safe for any text; no redirect built from headers."""

from __future__ import annotations

import socket
from urllib.parse import quote

import httpx
import pytest

from hookproxy.testing import Canned, content_stream
from tests.conftest import PROXY_KEY, UPSTREAM_KEY, upstream_block

USER = [{"role": "user", "content": "hello"}]
AUTH = {"authorization": f"Bearer {PROXY_KEY}"}


def post(running, body, **kwargs):
    return httpx.post(running.url + "/v1/chat/completions", json=body, headers=AUTH, timeout=10, **kwargs)


@pytest.mark.parametrize(("backend", "model"), [("up", "模型-v1"), ("上游", "m1"), ("up", "naïve\u2028model")])
def test_a_name_outside_latin_1_streams_and_its_header_is_percent_encoded(
    proxy_for, fake_upstream, backend, model
):
    fake_upstream.queue(Canned(sse=content_stream(["a", "b", "c"])))
    running = proxy_for({"backends": {backend: upstream_block(fake_upstream)}, "default_backend": backend})
    with httpx.Client(timeout=10) as client, client.stream(
        "POST", running.url + "/v1/chat/completions", headers=AUTH,
        json={"model": f"{backend}:{model}", "messages": USER, "stream": True},
    ) as response:
        text = response.read().decode()
    assert response.status_code == 200, text
    assert response.headers["x-hookproxy-model"] == quote(model, safe="".join(
        chr(code) for code in range(0x20, 0x7F) if chr(code) != "%"))
    assert response.headers["x-hookproxy-backend"].isascii()
    assert text.rstrip().endswith("data: [DONE]")
    assert fake_upstream.stream_log[-1].finished or fake_upstream.stream_log[-1].client_closed


@pytest.mark.parametrize("bad", ["m1\r\nx-injected: 1", "m1\nfoo", "m1\x00", "m1\x1b[31m", "m1\x7f", "m1\x85"])
@pytest.mark.parametrize("stream", [False, True])
def test_control_characters_in_model_are_a_400_before_any_upstream_call(proxy_for, fake_upstream, bad, stream):
    running = proxy_for()
    response = post(running, {"model": f"up:{bad}", "messages": USER, "stream": stream})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "model" and "control character" in error["message"]
    assert "x-injected" not in response.headers
    assert fake_upstream.requests_to() == []


def nested(depth: int) -> object:
    value: object = "x"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("depth", [255, 300, 1024])
def test_a_body_nested_too_deep_to_re_encode_is_a_400_naming_the_limit(proxy_for, fake_upstream, depth):
    running = proxy_for()
    # The body object is one level, so the extra field nests ``depth`` levels deep in all.
    raw = b'{"model": "up:m1", "messages": [{"role": "user", "content": "x"}], "extra": ' + \
        b"[" * (depth - 1) + b"1" + b"]" * (depth - 1) + b"}"
    response = httpx.post(running.url + "/v1/chat/completions", content=raw,
                          headers={**AUTH, "content-type": "application/json"}, timeout=10)
    assert response.status_code == 400, response.text
    assert "nested deeper than 254 levels" in response.json()["error"]["message"]
    assert fake_upstream.requests_to() == []


def test_a_body_at_the_depth_limit_is_served(proxy_for, fake_upstream):
    running = proxy_for()
    raw = b'{"model": "up:m1", "messages": [{"role": "user", "content": "x"}], "extra": ' + \
        b"[" * 253 + b"1" + b"]" * 253 + b"}"  # 254 levels with the body object
    response = httpx.post(running.url + "/v1/chat/completions", content=raw,
                          headers={**AUTH, "content-type": "application/json"}, timeout=10)
    assert response.status_code == 200, response.text


def test_health_without_a_key_says_only_that_the_proxy_is_up(proxy_for):
    running = proxy_for(instances={"openai-compatible.nokey": {"api_url": "http://127.0.0.1:9/v1", "api_key": ""}})
    anonymous = httpx.get(running.url + "/health")
    assert anonymous.status_code == 200
    assert anonymous.json() == {"status": "ok"}
    detailed = httpx.get(running.url + "/health", headers=AUTH)
    assert detailed.json()["backends"]["openai-compatible.nokey"]["usable"] is False
    assert httpx.get(running.url + "/health", headers={"authorization": "Bearer wrong"}).status_code == 401
    for response in (anonymous, detailed):
        assert UPSTREAM_KEY not in response.text and PROXY_KEY not in response.text


def raw_request(url: str, request: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    return answer


@pytest.mark.parametrize("path", ["/health/", "/v1/models/", "/-/plugins/"])
def test_no_redirect_is_built_from_the_host_header(proxy_for, path):
    running = proxy_for()
    answer = raw_request(running.url, f"GET {path} HTTP/1.1\r\nHost: evil.example\r\n\r\n".encode())
    head = answer.split(b"\r\n\r\n")[0].lower()
    assert not head.startswith(b"http/1.1 3"), head
    assert b"location:" not in head and b"evil.example" not in answer
