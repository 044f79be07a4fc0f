"""The front end's own rules: error shapes and statuses, the stream start check, keep-alives,
and the token estimate."""

from __future__ import annotations

import httpx
import orjson
import pytest

from hookproxy import BadStream, SSEEvent, UpstreamError
from hookproxy.testing import Canned, content_stream
from hookproxy_anthropic.frontend import MessagesFrontend, anthropic_started
from hookproxy_anthropic.tokens import estimate

USER = [{"role": "user", "content": "Hello there"}]


@pytest.mark.parametrize(("status", "client_status", "kind"), [
    (400, 400, "invalid_request_error"), (401, 401, "authentication_error"), (402, 402, "billing_error"),
    (403, 403, "permission_error"), (404, 404, "not_found_error"), (413, 413, "request_too_large"),
    (429, 429, "rate_limit_error"), (500, 500, "api_error"), (502, 502, "api_error"), (504, 504, "timeout_error"),
    (503, 529, "overloaded_error"), (529, 529, "overloaded_error"), (508, 508, "api_error"),
    (422, 422, "invalid_request_error"),
])
def test_errors_in_anthropic_shape(status, client_status, kind):
    frontend = MessagesFrontend.__new__(MessagesFrontend)
    failure = UpstreamError("it broke", status=status)
    assert frontend.error_status(failure) == client_status
    assert frontend.error_body(failure) == {"type": "error", "error": {"type": kind, "message": "it broke"}}
    frame = frontend.error_event(failure, None)
    assert frame.startswith(b"event: error\ndata: ") and frame.endswith(b"\n\n")
    assert orjson.loads(frame.split(b"data: ", 1)[1]) == frontend.error_body(failure)


def judged(data, need_output=True, event=None, comments=()):
    return anthropic_started(SSEEvent(data=None if data is None else orjson.dumps(data).decode(), event=event,
                                      comments=list(comments)), "claude", need_output)


def test_the_stream_start_check_reads_anthropic_events():
    assert judged({"type": "message_start", "message": {}}, need_output=False) is True
    assert judged({"type": "ping"}, need_output=False) is False
    assert judged({"type": "message_start", "message": {}}) is False
    assert judged({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}) is False
    assert judged({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use"}}) is True
    assert judged({"type": "content_block_delta", "delta": {"type": "text_delta", "text": ""}}) is False
    assert judged({"type": "content_block_delta", "delta": {"type": "text_delta", "text": "a"}}) is True
    assert judged({"type": "message_delta", "delta": {"stop_reason": "max_tokens"}}) is True
    assert judged(None, comments=["keep-alive"]) is False


@pytest.mark.parametrize(("data", "message"), [
    ({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, "Overloaded"),
    ({"type": "message_stop"}, "without any content"),
    ("not an object", "malformed"),
])
def test_a_failed_stream_start_is_a_bad_stream(data, message):
    with pytest.raises(BadStream, match=message):
        judged(data, need_output=False)


def test_a_streaming_client_that_waits_for_a_retry_gets_ping_events(start, fake_upstream):
    running = start(cli={"keepalive_interval": 0.2, "min_retry_wait": 0})
    fake_upstream.queue(Canned(status=429, json={"error": {"message": "later"}}, headers={"Retry-After": "1"}),
                        Canned(sse=content_stream(["ok"])))
    body = {"model": "gpt-fake", "max_tokens": 8, "messages": USER, "stream": True}
    with httpx.stream("POST", running.url + "/v1/messages", json=body,
                      headers={"x-api-key": "sk-proxy-anthropic"}, timeout=30) as response:
        frames = [frame for frame in response.read().decode().split("\n\n") if frame]
    assert response.status_code == 200
    pings = [i for i, frame in enumerate(frames) if frame == 'event: ping\ndata: {"type":"ping"}']
    start_at = next(i for i, frame in enumerate(frames) if frame.startswith("event: message_start"))
    assert pings and max(pings) < start_at
    assert frames[-1].startswith("event: message_stop")


def test_errors_raised_by_the_core_use_the_anthropic_shape_too(start):
    running = start()
    with running.client() as client:
        unknown = client.post("/v1/messages", headers={"x-api-key": "sk-proxy-anthropic"},
                              json={"model": "nowhere:m", "max_tokens": 8, "messages": USER})
        big = client.post("/v1/messages", headers={"x-api-key": "sk-proxy-anthropic"},
                          content=b"{" + b" " * (11 * 1024 * 1024) + b"}")
        wrong_method = client.get("/v1/messages", headers={"x-api-key": "sk-proxy-anthropic"})
    assert unknown.status_code == 400 and unknown.json()["error"]["type"] == "invalid_request_error"
    assert "unknown backend 'nowhere'" in unknown.json()["error"]["message"]
    assert big.status_code == 413 and big.json()["error"]["type"] == "request_too_large"
    assert wrong_method.status_code == 405 and wrong_method.json()["type"] == "error"


def test_the_token_estimate():
    body = {"system": "abcd" * 10, "tools": [{"name": "Bash", "input_schema": {"type": "object"}}],
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "abcdefgh"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "A" * 5000}}]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "Bash",
                                                   "input": {"command": "ls"}}]}]}
    schema = len('{"type":"object"}') // 4 + 1
    tool_input = (len('{"command":"ls"}') + 3) // 4
    assert estimate(body) == 10 + (1 + schema) + (4 + 2 + 1600) + (4 + 1 + tool_input)
