"""Broken upstream answers: a success must be the protocol it claims, encodings are decoded or
refused, success bodies are capped, and no credential an upstream echoes reaches a client or a log."""

from __future__ import annotations

import gzip
import logging
import zlib

import httpx
import orjson
import pytest

from hookproxy.testing import Canned, chat_completion, content_stream
from tests.conftest import PROXY_KEY, UPSTREAM_KEY, upstream_block

USER = [{"role": "user", "content": "hello"}]
AUTH = {"authorization": f"Bearer {PROXY_KEY}"}
HTML = b"<html><body><h1>502 Bad Gateway</h1></body></html>"


def post(running, body, **kwargs):
    return httpx.post(running.url + "/v1/chat/completions", json=body, headers=AUTH, timeout=20, **kwargs)


@pytest.fixture
def chain(proxy_for, fake_upstream, make_fake_upstream):
    """Backends ``a`` (the session fake upstream) and ``b`` (a second one); returns (proxy, a, b)."""
    second = make_fake_upstream()
    running = proxy_for({"backends": {"a": upstream_block(fake_upstream), "b": upstream_block(second)},
                         "default_backend": "a|b", "failure_handling": {"min_retry_wait": 0}})
    return running, fake_upstream, second


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("answer", [
    Canned(body=HTML, headers={"content-type": "text/html"}),
    Canned(body=HTML, headers={"content-type": "application/json"}),
    Canned(body=b"", headers={"content-type": "application/json"}),
    Canned(body=b"[1, 2]"),
], ids=["html", "html-claiming-json", "empty", "json-array"])
def test_a_non_json_success_is_a_502_that_fails_over(chain, stream, answer):
    running, first, second = chain
    first.handler = lambda request: answer
    response = post(running, {"model": "m1", "messages": USER, "stream": stream})
    assert response.status_code == 200, response.text
    assert response.headers["x-hookproxy-backend"] == "b"
    assert "echo" in response.text and "<html>" not in response.text
    assert len(first.requests_to()) >= 1 and len(second.requests_to()) == 1


@pytest.mark.parametrize("stream", [False, True])
def test_a_non_json_success_of_a_lone_backend_is_a_502_naming_it(proxy_for, fake_upstream, stream):
    fake_upstream.handler = lambda request: Canned(body=HTML, headers={"content-type": "text/html"})
    running = proxy_for({"failure_handling": {"min_retry_wait": 0}})
    response = post(running, {"model": "up:m1", "messages": USER, "stream": stream})
    assert response.status_code == 502, response.text
    message = response.json()["error"]["message"]
    assert "'up'" in message and "not a JSON object" in message and "text/html" in message


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_compressed_answer_is_decoded(proxy_for, fake_upstream, encoding):
    body = orjson.dumps(chat_completion("squeezed " * 1000))
    packed = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)
    fake_upstream.queue(Canned(body=packed, headers={"content-encoding": encoding}))
    running = proxy_for()
    response = post(running, {"model": "up:m1", "messages": USER})
    assert response.status_code == 200, response.text
    assert "content-encoding" not in response.headers
    assert response.json()["choices"][0]["message"]["content"] == "squeezed " * 1000


def test_a_compressed_stream_is_decoded(proxy_for, fake_upstream):
    events = b"".join(b"data: " + orjson.dumps(event) + b"\n\n" for event in content_stream(["zip", "ped"]))
    packed = gzip.compress(events + b"data: [DONE]\n\n")
    fake_upstream.queue(Canned(chunks=[packed[:20], packed[20:]], headers={"content-encoding": "gzip"}))
    running = proxy_for()
    with httpx.Client(timeout=10) as client, client.stream(
        "POST", running.url + "/v1/chat/completions", headers=AUTH,
        json={"model": "up:m1", "messages": USER, "stream": True},
    ) as response:
        text = response.read().decode()
    assert response.status_code == 200
    assert '"content":"zip"' in text and '"content":"ped"' in text and text.endswith("data: [DONE]\n\n")


@pytest.mark.parametrize("stream", [False, True])
def test_an_encoding_the_proxy_cannot_decode_is_refused_as_a_502(proxy_for, fake_upstream, stream):
    fake_upstream.handler = lambda request: Canned(body=b"\x8b\x00garbage", headers={"content-encoding": "br"})
    running = proxy_for({"failure_handling": {"min_retry_wait": 0}})
    response = post(running, {"model": "up:m1", "messages": USER, "stream": stream})
    assert response.status_code == 502, response.text
    assert "Content-Encoding 'br'" in response.json()["error"]["message"]


def test_a_broken_gzip_body_is_a_502(proxy_for, fake_upstream):
    fake_upstream.handler = lambda request: Canned(body=b"not gzip at all", headers={"content-encoding": "gzip"})
    running = proxy_for({"failure_handling": {"min_retry_wait": 0}})
    response = post(running, {"model": "up:m1", "messages": USER})
    assert response.status_code == 502
    assert "broken gzip body" in response.json()["error"]["message"]


@pytest.mark.parametrize("encoding", [None, "gzip"])
def test_a_success_body_over_max_response_bytes_is_a_502(proxy_for, fake_upstream, encoding):
    body = orjson.dumps(chat_completion("x" * 50_000))
    headers = {}
    if encoding:
        body, headers = gzip.compress(body), {"content-encoding": encoding}  # small on the wire, big decoded
    fake_upstream.handler = lambda request: Canned(body=body, headers=headers)
    running = proxy_for({"max_response_bytes": 20_000})
    response = post(running, {"model": "up:m1", "messages": USER})
    assert response.status_code == 502, response.text[:200]
    assert "max_response_bytes" in response.json()["error"]["message"]
    assert len(fake_upstream.requests_to()) == 1  # failed over at once, not retried
    fake_upstream.handler = None
    assert post(running, {"model": "up:m1", "messages": USER}).status_code == 200


@pytest.mark.parametrize("error_body", [
    {"error": {"message": f"bad key: Bearer {UPSTREAM_KEY}", "type": "invalid_request_error"}},
    {"error": f"Incorrect API key provided: {UPSTREAM_KEY}; proxy key {PROXY_KEY}"},
    {"detail": {"auth": f"authorization={UPSTREAM_KEY}"}},
], ids=["openai", "string", "other"])
@pytest.mark.parametrize("stream", [False, True])
def test_keys_an_upstream_echoes_are_redacted_from_answers_and_logs(proxy_for, fake_upstream, caplog,
                                                                    error_body, stream):
    caplog.set_level(logging.DEBUG)
    fake_upstream.handler = lambda request: Canned(status=401, json=error_body)
    running = proxy_for()
    response = post(running, {"model": "up:m1", "messages": USER, "stream": stream})
    assert response.status_code == 401
    assert "[redacted]" in response.text
    for secret in (UPSTREAM_KEY, PROXY_KEY):
        assert secret not in response.text
        assert secret not in caplog.text


def test_a_token_a_plugin_added_is_redacted_too(proxy_for, fake_upstream):
    """Credentials a ``prepare_request`` hook puts on the request (an OAuth token) count as well."""
    import hookproxy

    class TokenPlugin:
        @hookproxy.hookimpl
        def prepare_request(self, backend, call, request):
            request.headers["authorization"] = "Bearer oauth-token-0123456789"

    fake_upstream.handler = lambda request: Canned(
        status=500, json={"error": {"message": f"token {request.headers['authorization'][7:]} expired"}})
    running = proxy_for(plugins=(("token", TokenPlugin()),))
    response = post(running, {"model": "up:m1", "messages": USER})
    assert response.status_code == 500
    assert "oauth-token-0123456789" not in response.text and "[redacted]" in response.text


def test_a_key_in_an_error_streamed_before_any_output_is_redacted(proxy_for, fake_upstream, caplog):
    caplog.set_level(logging.DEBUG)
    fake_upstream.queue(Canned(sse=[{"error": {"message": f"invalid key Bearer {UPSTREAM_KEY}"}}]))
    running = proxy_for()
    response = post(running, {"model": "up:m1", "messages": USER, "stream": True})
    assert response.status_code == 502
    assert UPSTREAM_KEY not in response.text and UPSTREAM_KEY not in caplog.text
