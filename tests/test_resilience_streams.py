"""Streams under failure: keep-alives while waiting, idle timeout, lifetime cap."""

from __future__ import annotations

import json
import time
from typing import Any

import openai

from hookproxy.testing import Canned, chunk, content_stream
from tests.conftest import PROXY_KEY, upstream_block

USER = [{"role": "user", "content": "hello"}]
AUTH = {"authorization": f"Bearer {PROXY_KEY}"}
FAST = {"min_retry_wait": 0.05, "keepalive_interval": 0.1}


def _stream_lines(running: Any, model: str = "up:m1") -> tuple[int, dict[str, str], list[str]]:
    with running.client() as client, client.stream(
        "POST", "/v1/chat/completions", json={"model": model, "messages": USER, "stream": True}, headers=AUTH
    ) as response:
        return response.status_code, dict(response.headers), list(response.iter_lines())


def _data(lines: list[str]) -> list[str]:
    return [line[6:] for line in lines if line.startswith("data: ")]


def test_keepalive_comments_flow_while_a_streaming_client_waits_for_a_retry(proxy_for, fake_upstream):
    fake_upstream.queue(Canned(status=429, json={"error": {"message": "wait"}}, headers={"retry-after": "0.5"}))
    running = proxy_for({"failure_handling": FAST})
    status, headers, lines = _stream_lines(running)
    assert status == 200
    assert headers["x-hookproxy-failover"] == "waiting"
    comments = [line for line in lines if line.startswith(":")]
    assert comments[0] == ": retrying in 0.5s"
    assert ": keepalive" in comments
    assert comments[-1].startswith(": hookproxy backend=up")
    assert _data(lines)[-1] == "[DONE]"
    assert len(fake_upstream.requests_to()) == 2


def test_the_openai_sdk_reads_through_keepalives(proxy_for, fake_upstream):
    fake_upstream.queue(Canned(status=503, json={}, headers={"retry-after": "0.3"}))
    running = proxy_for({"failure_handling": FAST})
    sdk = openai.OpenAI(base_url=running.url + "/v1", api_key=PROXY_KEY, max_retries=0)
    pieces = [c.choices[0].delta.content or "" for c in sdk.chat.completions.create(
        model="up:m1", messages=USER, stream=True) if c.choices]
    assert "".join(pieces) == "echo: hello"


def test_a_final_failure_after_keepalives_is_one_error_event(proxy_for, fake_upstream):
    fake_upstream.queue(Canned(status=429, json={"error": {"message": "still limited"}},
                               headers={"retry-after": "0.2"}),
                        Canned(status=429, json={"error": {"message": "still limited"}},
                               headers={"retry-after": "0.2"}))
    running = proxy_for({"failure_handling": FAST})
    status, _, lines = _stream_lines(running)
    assert status == 200
    events = _data(lines)
    assert len(events) == 1
    assert json.loads(events[0])["error"]["message"] == "still limited"
    assert len(fake_upstream.requests_to()) == 2


def test_an_idle_upstream_ends_the_stream_with_an_error_event(proxy_for, fake_upstream):
    first = b"data: " + json.dumps(chunk({"role": "assistant", "content": "par"})).encode() + b"\n\n"
    fake_upstream.queue(Canned(chunks=[first, b"data: [DONE]\n\n"], delay=3))
    running = proxy_for({"failure_handling": {**FAST, "stream_idle_timeout": 0.3}})
    status, _, lines = _stream_lines(running)
    events = _data(lines)
    assert status == 200
    assert json.loads(events[0])["choices"][0]["delta"]["content"] == "par"
    error = json.loads(events[-1])["error"]
    assert error["code"] == "upstream_timeout"
    assert "stream_idle_timeout" in error["message"]


def test_a_stream_past_its_lifetime_cap_ends_with_an_error_event(proxy_for, fake_upstream):
    fake_upstream.queue(Canned(sse=content_stream([f"{n} " for n in range(40)]), delay=0.05))
    running = proxy_for({"failure_handling": {**FAST, "stream_max_lifetime": 0.5}})
    _, _, lines = _stream_lines(running)
    events = _data(lines)
    assert "[DONE]" not in events
    assert "stream_max_lifetime" in json.loads(events[-1])["error"]["message"]
    assert 1 < len(events) < 40


def test_the_happy_path_stream_is_untouched(proxy_for, fake_upstream):
    fake_upstream.queue(Canned(sse=content_stream(["a", "b"])))
    status, headers, lines = _stream_lines(proxy_for({"backends": {"up": upstream_block(fake_upstream)}}))
    assert status == 200
    assert headers["x-hookproxy-backend"] == "up"
    assert not [line for line in lines if line.startswith(":")]
    assert _data(lines)[-1] == "[DONE]"


def test_a_client_that_leaves_during_the_wait_cancels_the_retry(proxy_for, fake_upstream):
    fake_upstream.queue(Canned(status=429, json={}, headers={"retry-after": "0.6"}))
    running = proxy_for({"failure_handling": FAST})
    with running.client() as client, client.stream(
        "POST", "/v1/chat/completions", json={"model": "up:m1", "messages": USER, "stream": True}, headers=AUTH
    ) as response:
        assert next(response.iter_lines()) == ": retrying in 0.6s"
    time.sleep(1.2)
    assert len(fake_upstream.requests_to()) == 1
