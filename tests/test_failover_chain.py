"""Failover through a chain of fake upstreams a|b|c: each failure mode ends as the README's failover table says."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hookproxy import RetryDecision, hookimpl
from hookproxy.testing import Canned, FakeUpstream, RunningProxy, chat_completion, chunk, content_stream
from tests.conftest import PROXY_KEY, core_pm, upstream_block

USER = [{"role": "user", "content": "hello"}]
AUTH = {"authorization": f"Bearer {PROXY_KEY}"}
FAST = {"min_retry_wait": 0.05, "keepalive_interval": 0.1}


class Chain:
    def __init__(self, upstreams: list[FakeUpstream], start: Callable[..., RunningProxy]) -> None:
        self.a, self.b, self.c = upstreams
        self.start = start


@pytest.fixture(scope="module")
def _three_upstreams() -> Iterator[list[FakeUpstream]]:
    upstreams = [FakeUpstream().start() for _ in range(3)]
    yield upstreams
    for upstream in upstreams:
        upstream.stop()


@pytest.fixture
def chain(_three_upstreams: list[FakeUpstream], write_config: Callable[..., Path],
          make_proxy: Callable[..., RunningProxy]) -> Chain:
    """Backends a, b, c on three fake upstreams (shared by the module, reset for each test)."""
    upstreams = _three_upstreams
    for upstream in upstreams:
        upstream.reset()

    def start(failure_handling: dict[str, Any] | None = None, plugins: tuple[tuple[str, object], ...] = (),
              backends: dict[str, dict[str, Any]] | None = None, **config: Any) -> RunningProxy:
        blocks = {name: upstream_block(upstream) for name, upstream in zip("abc", upstreams, strict=True)}
        for name, extra in (backends or {}).items():
            blocks[name].update(extra)
        path = write_config({"auth": {"api_keys": [PROXY_KEY]}, "backends": blocks,
                             "failure_handling": {**FAST, **(failure_handling or {})}, **config})
        return make_proxy(path, {}, pm=core_pm(*plugins))

    return Chain(upstreams, start)


def post(proxy: RunningProxy, model: str = "a:m1|b:m2|c:m3", **body: Any) -> httpx.Response:
    with proxy.client() as client:
        return client.post("/v1/chat/completions", json={"model": model, "messages": USER, **body}, headers=AUTH)


def stream_text(proxy: RunningProxy, model: str = "a:m1|b:m2|c:m3") -> tuple[httpx.Response, str]:
    with proxy.client() as client, client.stream(
        "POST", "/v1/chat/completions", json={"model": model, "messages": USER, "stream": True}, headers=AUTH
    ) as response:
        return response, response.read().decode()


def content_of(sse: str) -> str:
    text = ""
    for line in sse.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            payload = json.loads(line[6:])
            for choice in payload.get("choices", []):
                text += choice.get("delta", {}).get("content") or ""
    return text


# --- non-streaming decisions by status -----------------------------------------------------------


def test_500_fails_over_at_once_and_the_headers_name_the_answering_backend(chain, caplog):
    caplog.set_level("INFO", logger="hookproxy.failover")
    chain.a.queue(Canned(status=500, json={"error": {"message": "boom"}}))
    proxy = chain.start()
    response = post(proxy)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "echo: hello"
    assert response.headers["x-hookproxy-backend"] == "b"
    assert response.headers["x-hookproxy-model"] == "m2"
    assert len(chain.a.requests_to()) == 1
    assert chain.b.requests_to()[0].json["model"] == "m2"
    assert any("failing over from a to b:m2" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("status", [401, 403])
def test_auth_errors_fail_over_without_retry(chain, status):
    chain.a.queue(Canned(status=status, json={"error": {"message": "no"}}))
    response = post(chain.start())
    assert response.headers["x-hookproxy-backend"] == "b"
    assert len(chain.a.requests_to()) == 1


def test_503_is_retried_once_then_fails_over(chain):
    chain.a.queue(Canned(status=503, json={}), Canned(status=503, json={}))
    response = post(chain.start())
    assert response.headers["x-hookproxy-backend"] == "b"
    assert len(chain.a.requests_to()) == 2


def test_503_retry_can_succeed_on_the_same_backend(chain):
    chain.a.queue(Canned(status=503, json={}))
    response = post(chain.start())
    assert response.headers["x-hookproxy-backend"] == "a"
    assert len(chain.a.requests_to()) == 2


def test_connection_refused_fails_over(chain):
    proxy = chain.start(backends={"a": {"api_url": "http://127.0.0.1:9/v1"}})
    response = post(proxy)
    assert response.headers["x-hookproxy-backend"] == "b"


def test_429_with_short_retry_after_waits_and_retries_the_same_backend(chain, caplog):
    caplog.set_level("INFO", logger="hookproxy.failover")
    chain.a.queue(Canned(status=429, json={"error": {"message": "slow down"}}, headers={"retry-after": "0.2"}))
    response = post(chain.start())
    assert response.headers["x-hookproxy-backend"] == "a"
    assert len(chain.a.requests_to()) == 2
    assert not chain.b.requests_to()
    assert any("waiting 0.2s before retrying a" in record.getMessage() for record in caplog.records)


def test_429_with_long_retry_after_fails_over_at_once(chain):
    chain.a.queue(Canned(status=429, json={}, headers={"retry-after": "120"}))
    started = time.monotonic()
    response = post(chain.start())
    assert response.headers["x-hookproxy-backend"] == "b"
    assert len(chain.a.requests_to()) == 1
    assert time.monotonic() - started < 10  # no 120 s wait (bound, not a benchmark)


def test_429_without_a_next_candidate_surfaces_with_its_retry_after(chain):
    chain.a.queue(Canned(status=429, json={"error": {"message": "quota"}}, headers={"retry-after": "120"}))
    response = post(chain.start(), model="a:m1")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "120"
    assert response.json()["error"]["message"] == "quota"


def test_when_the_proxy_gives_up_on_rate_limits_its_429_carries_retry_after(chain):
    chain.a.queue(Canned(status=429, json={}), Canned(status=429, json={}))
    chain.b.queue(Canned(status=429, json={}))
    response = post(chain.start(failure_handling={"max_failover_hops": 1}), model="a:m1|b:m2")
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) >= 1


def test_400_surfaces_immediately(chain):
    chain.a.queue(Canned(status=400, json={"error": {"message": "bad field", "type": "invalid_request_error"}}))
    response = post(chain.start())
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "bad field"
    assert not chain.b.requests_to()


def test_400_on_a_stream_request_is_an_http_400_not_a_stream(chain):
    chain.a.queue(Canned(status=400, json={"error": {"message": "bad"}}))
    response, _ = stream_text(chain.start())
    assert response.status_code == 400


def test_a_stalled_backend_times_out_and_fails_over(chain):
    chain.a.queue(Canned(stall=2, json=chat_completion("late")))
    proxy = chain.start(backends={"a": {"timeout": 0.3}})
    response = post(proxy)
    assert response.headers["x-hookproxy-backend"] == "b"


def test_hop_limit_surfaces_the_last_error(chain):
    chain.a.queue(Canned(status=500, json={"error": {"message": "a broke"}}))
    chain.b.queue(Canned(status=502, json={"error": {"message": "b broke"}}),
                  Canned(status=502, json={"error": {"message": "b broke again"}}))
    response = post(chain.start(failure_handling={"max_failover_hops": 1}))
    assert response.status_code == 502
    assert response.json()["error"]["message"] == "b broke again"
    assert not chain.c.requests_to()


def test_budget_bounds_a_stalled_chain(chain):
    chain.a.queue(Canned(stall=2, json=chat_completion("late")))
    proxy = chain.start(failure_handling={"total_timeout_budget": 0.5})
    started = time.monotonic()
    response = post(proxy)
    assert response.status_code == 504
    assert "total_timeout_budget" in response.json()["error"]["message"]
    assert time.monotonic() - started < 4  # bounded by the budget, not by the 2 s stall
    assert not chain.b.requests_to()


def test_a_retry_that_would_outlast_the_budget_fails_over_instead(chain):
    chain.a.queue(Canned(status=429, json={}, headers={"retry-after": "5"}))
    response = post(chain.start(failure_handling={"total_timeout_budget": 2}))
    assert response.headers["x-hookproxy-backend"] == "b"


# --- candidates --------------------------------------------------------------------------------


def test_default_backend_selector_chains_bare_models(chain):
    chain.a.queue(Canned(status=500, json={}))
    proxy = chain.start(default_backend="a:m1|b:m2")
    response = post(proxy, model="anything")
    assert response.headers["x-hookproxy-backend"] == "b"
    assert chain.b.requests_to()[0].json["model"] == "m2"


def test_named_failover_route_is_a_model_name(chain):
    chain.a.queue(Canned(status=500, json={}))
    proxy = chain.start(failover_routes={"smart": {"policy": "ordered", "elements": ["a:m1", "c:m3"]}})
    response = post(proxy, model="smart")
    assert response.headers["x-hookproxy-backend"] == "c"
    assert response.headers["x-hookproxy-model"] == "m3"


def test_round_robin_route_spreads_requests(chain):
    proxy = chain.start(failover_routes={"rr": {"policy": "round-robin", "elements": ["a:m1", "b:m2"]}})
    first = post(proxy, model="rr").headers["x-hookproxy-backend"]
    second = post(proxy, model="rr").headers["x-hookproxy-backend"]
    assert {first, second} == {"a", "b"}


class _PluginPolicy:
    """A plugin that decides before the core: fail over on 503 instead of retrying."""

    seen: list[int] = []

    @hookimpl
    def on_rate_limit(self, backend: Any, call: Any, error: Any) -> RetryDecision | None:
        self.seen.append(error.status)
        if error.status == 503:
            return RetryDecision("failover", 0.0, "plugin says move on")
        return None


def test_on_rate_limit_plugins_decide_first(chain):
    plugin = _PluginPolicy()
    chain.a.queue(Canned(status=503, json={}))
    response = post(chain.start(plugins=(("policy", plugin),)))
    assert response.headers["x-hookproxy-backend"] == "b"
    assert len(chain.a.requests_to()) == 1
    assert plugin.seen == [503]


# --- streams: failures before the first output fail over -----------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(Canned(sse=[], done=False), id="no-event"),
        pytest.param(Canned(sse=[]), id="only-done"),
        pytest.param(Canned(sse=[chunk({"role": "assistant", "content": ""})]), id="role-only-then-done"),
        pytest.param(Canned(sse=["{not json"]), id="malformed-sse"),
        pytest.param(Canned(chunks=[b"<html>oops</html>\n\n"]), id="garbage"),
        pytest.param(Canned(sse=[{"error": {"message": "overloaded"}}]), id="error-event"),
        pytest.param(Canned(sse=content_stream(["x"]), reset_after=1), id="reset-before-first-output"),
        pytest.param(Canned(status=500, json={}), id="http-500"),
    ],
)
def test_stream_that_fails_before_output_fails_over(chain, answer):
    chain.a.queue(answer)
    response, text = stream_text(chain.start())
    assert response.status_code == 200
    assert response.headers["x-hookproxy-backend"] == "b"
    assert content_of(text) == "echo: hello"
    assert text.rstrip().endswith("data: [DONE]")
    assert len(chain.a.requests_to()) == 1


def test_stream_stalled_before_its_first_output_fails_over(chain):
    chain.a.queue(Canned(sse=content_stream(["late"]), delay=2))
    response, text = stream_text(chain.start(failure_handling={"stream_idle_timeout": 0.3}))
    assert response.headers["x-hookproxy-backend"] == "b"
    assert content_of(text) == "echo: hello"


def test_no_upstream_request_is_repeated_after_the_client_received_bytes(chain):
    chain.a.queue(Canned(sse=content_stream(["one ", "two ", "three"]), reset_after=3))
    response, text = stream_text(chain.start())
    assert response.status_code == 200
    assert content_of(text) == "one two "
    last = [line for line in text.splitlines() if line.startswith("data: ")][-1]
    assert json.loads(last[6:])["error"]["code"] == "upstream_unreachable"
    assert len(chain.a.requests_to()) == 1
    assert not chain.b.requests_to() and not chain.c.requests_to()


def test_a_good_stream_is_relayed_byte_for_byte_in_failover_mode(chain):
    events = content_stream(["你", "好"])
    chain.a.queue(Canned(sse=events, delay=0.01))
    response, text = stream_text(chain.start())
    assert response.headers["x-hookproxy-backend"] == "a"
    assert content_of(text) == "你好"
