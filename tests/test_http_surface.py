"""Auth, errors, /v1/models, /health, loop guard, disconnects: the HTTP contract around chat."""

from __future__ import annotations

import time

import httpx
import pytest

from hookproxy.testing import Canned, content_stream
from tests.conftest import PROXY_KEY, UPSTREAM_KEY

USER = [{"role": "user", "content": "hello"}]
AUTH = {"authorization": f"Bearer {PROXY_KEY}"}


def post(running, body=None, headers=None, **kwargs):
    return httpx.post(running.url + "/v1/chat/completions", json=body, headers={**AUTH, **(headers or {})},
                      timeout=10, **kwargs)


def assert_openai_error(response, status, *needles):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    for needle in needles:
        assert needle in error["message"]
    return error


@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer wrong"}, {"authorization": f"Basic {PROXY_KEY}"}])
def test_requests_without_a_valid_key_get_401(proxy_for, headers):
    running = proxy_for()
    response = httpx.post(running.url + "/v1/chat/completions", json={"model": "m1", "messages": USER},
                          headers=headers)
    error = assert_openai_error(response, 401, "API key")
    assert error["type"] == "authentication_error"


def test_x_api_key_header_is_accepted(proxy_for):
    running = proxy_for()
    response = httpx.post(running.url + "/v1/chat/completions", json={"model": "m1", "messages": USER},
                          headers={"x-api-key": PROXY_KEY})
    assert response.status_code == 200


def test_malformed_json_is_400(proxy_for):
    running = proxy_for()
    response = httpx.post(running.url + "/v1/chat/completions", content=b"{nope", headers=AUTH)
    assert_openai_error(response, 400, "not valid JSON")


@pytest.mark.parametrize(
    ("body", "param"),
    [({"messages": USER}, "model"), ({"model": "m1"}, "messages"), ({"model": "m1", "messages": [{"x": 1}]},
                                                                   "messages.0"),
     ({"model": "m1", "messages": USER, "stream": "yes"}, "stream")],
)
def test_schema_problems_are_400_naming_the_field(proxy_for, body, param):
    error = assert_openai_error(post(proxy_for(), body), 400)
    assert error["param"] == param


def test_unknown_backend_is_400_listing_the_known_ones(proxy_for):
    error = assert_openai_error(post(proxy_for(), {"model": "nope:m1", "messages": USER}), 400, "'nope'", "up")
    assert error["code"] == "unknown_backend"


def test_body_over_the_limit_is_413(proxy_for):
    running = proxy_for({"max_body_bytes": 1000})
    assert_openai_error(post(running, {"model": "m1", "messages": [{"role": "user", "content": "x" * 2000}]}), 413)


def test_unreachable_upstream_is_502(proxy_for, fake_upstream):
    running = proxy_for({"backends": {"up": {"connector": "openai-compatible", "api_url": "http://127.0.0.1:9/v1"}}})
    assert_openai_error(post(running, {"model": "m1", "messages": USER}), 502, "unreachable")


def test_upstream_timeout_is_504(proxy_for, fake_upstream):
    running = proxy_for({"backends": {"up": {"connector": "openai-compatible", "api_url": fake_upstream.url,
                                             "timeout": 0.3}}})
    fake_upstream.queue(Canned(stall=2))
    assert_openai_error(post(running, {"model": "m1", "messages": USER}), 504, "timed out")


def test_error_after_the_first_streamed_byte_is_one_error_event(proxy_for, fake_upstream):
    running = proxy_for()
    fake_upstream.queue(Canned(sse=content_stream(["a", "b", "c"]), reset_after=2))
    with httpx.stream("POST", running.url + "/v1/chat/completions", headers=AUTH, timeout=10,
                      json={"model": "m1", "messages": USER, "stream": True}) as response:
        assert response.status_code == 200
        events = [line for line in response.iter_lines() if line.startswith("data:")]
    assert len(events) == 3
    assert '"error"' in events[-1] and "broke the stream" in events[-1]


def test_a_client_that_disconnects_closes_the_upstream_stream(proxy_for, fake_upstream):
    running = proxy_for()
    fake_upstream.queue(Canned(sse=content_stream(["x"] * 200), delay=0.05))
    with httpx.stream("POST", running.url + "/v1/chat/completions", headers=AUTH, timeout=10,
                      json={"model": "m1", "messages": USER, "stream": True}) as response:
        for line in response.iter_lines():
            if '"x"' in line:
                break
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline and not fake_upstream.stream_log[-1].client_closed:
        time.sleep(0.02)
    record = fake_upstream.stream_log[-1]
    assert record.client_closed, record
    assert record.sent < record.planned


def test_loop_guard_rejects_a_request_that_already_passed_a_hookproxy(proxy_for):
    response = post(proxy_for(), {"model": "m1", "messages": USER}, headers={"x-hookproxy-loop-guard": "1"})
    assert_openai_error(response, 508, "loop")


def test_models_lists_every_usable_backend_with_routable_ids(proxy_for, fake_upstream):
    running = proxy_for(instances={"openai-compatible.other": {"api_url": fake_upstream.url, "models": ["x1"]},
                                   "openai-compatible.broken": {"api_url": fake_upstream.url, "api_key": "",
                                                                "models": ["hidden"]}})
    data = httpx.get(running.url + "/v1/models", headers=AUTH).json()["data"]
    ids = {item["id"]: item["owned_by"] for item in data}
    assert ids == {"up:m1": "up", "up:m2": "up", "other:x1": "other"}
    for model_id in ids:
        assert post(running, {"model": model_id, "messages": USER}).status_code == 200


def test_health_reports_each_backend_and_never_a_secret(proxy_for):
    running = proxy_for(instances={"openai-compatible.nokey": {"api_url": "http://127.0.0.1:9/v1", "api_key": ""}})
    response = httpx.get(running.url + "/health", headers={"authorization": f"Bearer {PROXY_KEY}"})
    assert response.status_code == 200
    body = response.json()
    assert body["backends"]["up"]["usable"] is True
    assert body["backends"]["openai-compatible.nokey"]["usable"] is False
    assert "api_key is empty" in body["backends"]["openai-compatible.nokey"]["reason"]
    assert UPSTREAM_KEY not in response.text and PROXY_KEY not in response.text


def test_no_key_configured_means_auth_off(proxy_for):
    running = proxy_for({"auth": {"api_keys": []}})
    response = httpx.post(running.url + "/v1/chat/completions", json={"model": "m1", "messages": USER})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("answer", "needle"),
    [(Canned(sse=[], done=False), "before any event"), (Canned(sse=[]), "without any content"),
     (Canned(chunks=[b"data: {not json\n\n"]), "malformed SSE data"),
     (Canned(sse=[{"error": {"message": "overloaded"}}]), "overloaded")],
)
def test_a_lone_backend_stream_that_fails_before_its_first_event_is_a_502(proxy_for, fake_upstream, answer, needle):
    fake_upstream.queue(answer)
    response = post(proxy_for(), {"model": "m1", "messages": USER, "stream": True})
    assert_openai_error(response, 502, needle)


@pytest.mark.parametrize(("method", "path", "status"), [("GET", "/v1/chat/completions", 405),
                                                         ("POST", "/v1/completions", 404), ("GET", "/nope", 404)])
def test_unknown_paths_and_methods_answer_in_the_openai_shape(proxy_for, method, path, status):
    response = httpx.request(method, proxy_for().url + path, headers=AUTH, json={})
    error = assert_openai_error(response, status, path)
    assert error["type"] == "invalid_request_error"
