"""The initial rate-limit retry : decisions, waits, connector-wide backoff, end to end."""

from __future__ import annotations

import logging
from collections.abc import Callable
from email.utils import formatdate
from pathlib import Path
from typing import Any

import httpx
import pytest

import hookproxy_qwen_oauth as plugin
from hookproxy import ChatCall, UpstreamError, UpstreamRequest
from hookproxy.proxy import Proxy
from hookproxy.retry_after import retry_after_from_headers
from hookproxy.routing import Route
from hookproxy.testing import Canned, FakeUpstream, RunningProxy
from hookproxy_qwen_oauth import ratelimit
from hookproxy_qwen_oauth.backend import QwenOAuthBackend
from hookproxy_qwen_oauth.testing import QwenService, write_creds

QUOTA = {"error": {"message": "Free allocated quota exceeded.", "type": "insufficient_quota",
                   "code": "insufficient_quota"}}


def backend_of(make: Callable[..., Proxy], **extra: Any) -> QwenOAuthBackend:
    backend = make(**extra).backends["qwen-oauth.test"]
    assert isinstance(backend, QwenOAuthBackend)
    return backend


def new_call() -> ChatCall:
    return ChatCall(body={"model": "coder-model", "messages": []}, route=Route("qwen-oauth", "coder-model"),
                    stream=False)


def error(status: int, retry_after: str | None = None, body: dict[str, Any] | None = None) -> UpstreamError:
    headers = {"retry-after": retry_after} if retry_after is not None else {}
    return UpstreamError("upstream", status=status, retry_after=retry_after_from_headers(headers),
                         upstream_body=(body or {}).get("error"), raw_body=b"")


DEFAULTS = {"qwen_oauth_initial_rate_limit_retry_max_wait_seconds": 10.0,
            "qwen_oauth_initial_rate_limit_retry_random_min_seconds": 3.0,
            "qwen_oauth_initial_rate_limit_retry_random_max_seconds": 10.0}


@pytest.mark.parametrize(("header", "wait"), [("5", 5.0), ("999", 10.0), ("0", 0.0), ("1.5", 1.5)])
def test_retry_after_is_used_and_capped(offline_proxy: Callable[..., Proxy], header: str, wait: float) -> None:
    backend = backend_of(offline_proxy, **DEFAULTS)
    call = new_call()
    decision = plugin.on_rate_limit(backend, call, error(429, header))
    assert decision is not None and decision.action == "retry" and decision.wait == pytest.approx(wait)
    call.attempt = 2
    assert plugin.on_rate_limit(backend, call, error(429, header)) is None  # exactly once


def test_http_date_retry_after(offline_proxy: Callable[..., Proxy]) -> None:
    import time
    decision = plugin.on_rate_limit(backend_of(offline_proxy, **DEFAULTS), new_call(),
                                    error(429, formatdate(time.time() + 4, usegmt=True)))
    assert decision is not None and 2.0 <= decision.wait <= 4.0


def test_random_wait_draws_once_and_is_capped(offline_proxy: Callable[..., Proxy],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    draws: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        draws.append((low, high))
        return 4.25

    monkeypatch.setattr(ratelimit.random, "uniform", uniform)
    decision = plugin.on_rate_limit(backend_of(offline_proxy, **DEFAULTS), new_call(), error(429, "-3"))
    assert decision is not None and decision.wait == 4.25 and draws == [(3.0, 10.0)]
    swapped = backend_of(offline_proxy, qwen_oauth_initial_rate_limit_retry_max_wait_seconds=2.0,
                         qwen_oauth_initial_rate_limit_retry_random_min_seconds=9.0,
                         qwen_oauth_initial_rate_limit_retry_random_max_seconds=5.0)
    decision = plugin.on_rate_limit(swapped, new_call(), error(429))
    assert decision is not None and decision.wait == 2.0 and draws[-1] == (5.0, 9.0)


def test_quota_503_is_recoverable_but_other_errors_are_not(offline_proxy: Callable[..., Proxy],
                                                           caplog: pytest.LogCaptureFixture) -> None:
    backend = backend_of(offline_proxy, **DEFAULTS)
    assert ratelimit.is_recoverable(error(503, body=QUOTA)) and ratelimit.is_recoverable(error(429, body=QUOTA))
    assert not ratelimit.is_recoverable(error(503))
    with caplog.at_level(logging.WARNING, "hookproxy.qwen_oauth"):
        for status in (400, 403, 404, 500, 503):
            assert plugin.on_rate_limit(backend, new_call(), error(status)) is None
    assert all(record.exc_info is None for record in caplog.records) and len(caplog.records) == 5
    assert backend.backoff.remaining() == 0


def test_disabled_retry_surfaces_the_first_429_and_records_no_backoff(offline_proxy: Callable[..., Proxy]) -> None:
    backend = backend_of(offline_proxy, enable_qwen_oauth_initial_rate_limit_retry=False)
    decision = plugin.on_rate_limit(backend, new_call(), error(429, "1"))
    assert decision is not None and decision.action == "failover" and decision.wait == 0
    assert backend.backoff.remaining() == 0


async def test_connector_wide_backoff_delays_others_but_not_the_retrying_request(
    offline_proxy: Callable[..., Proxy], creds_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    write_creds(creds_path)
    backend = backend_of(offline_proxy, **DEFAULTS)
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    backend.sleep = fake_sleep
    retrying = new_call()
    with caplog.at_level(logging.DEBUG, "hookproxy.qwen_oauth"):
        decision = plugin.on_rate_limit(backend, retrying, error(429, "3"))
        assert decision is not None and decision.wait == 3.0
        retrying.attempt = 2
        await backend.prepare(retrying, UpstreamRequest("POST", "", {}, retrying.body, 5))
        assert sleeps == []  # the core already waited for this request
        other = new_call()
        await backend.prepare(other, UpstreamRequest("POST", "", {}, other.body, 5))
    assert len(sleeps) == 1 and sleeps[0] == pytest.approx(3.0, rel=0.2)
    messages = [record.getMessage() for record in caplog.records]
    assert any(m.startswith("Qwen OAuth connector-wide rate-limit backoff recorded: wait=") for m in messages)
    assert any(m.startswith("Qwen OAuth connector-wide rate-limit backoff active: remaining=") for m in messages)


# --- end to end -----------------------------------------------------------------------------------


def post(proxy: RunningProxy, stream: bool = False) -> httpx.Response:
    with proxy.client() as client:
        body = {"model": "coder-model", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
        return client.post("/v1/chat/completions", json=body)


@pytest.mark.parametrize("stream", [False, True])
def test_first_429_is_held_and_retried_once(qwen: QwenService, fake_upstream: FakeUpstream, creds_path: Path,
                                            qwen_config: Callable[..., Path], make_proxy: Callable[..., RunningProxy],
                                            stream: bool) -> None:
    write_creds(creds_path)
    fake_upstream.queue(Canned(status=429, json={"error": {"message": "slow down"}}, headers={"Retry-After": "5"}))
    response = post(make_proxy(qwen_config()), stream)
    assert response.status_code == 200 and ("echo" in response.text and "hi" in response.text)
    assert len(fake_upstream.requests_to("/v1/chat/completions")) == 2


def test_second_429_surfaces_as_429(qwen: QwenService, fake_upstream: FakeUpstream, creds_path: Path,
                                    qwen_config: Callable[..., Path], make_proxy: Callable[..., RunningProxy]) -> None:
    write_creds(creds_path)
    fake_upstream.queue(Canned(status=429, json={"error": {"message": "first"}}),
                        Canned(status=429, json={"error": {"message": "second"}}, headers={"Retry-After": "7"}),
                        Canned(status=200, json={"never": "sent"}))
    response = post(make_proxy(qwen_config()))
    assert response.status_code == 429 and response.json()["error"]["message"] == "second"
    assert len(fake_upstream.requests_to("/v1/chat/completions")) == 2


def test_quota_503_is_retried_and_credentials_are_reread_before_the_retry(
    qwen: QwenService, fake_upstream: FakeUpstream, creds_path: Path, qwen_config: Callable[..., Path],
    make_proxy: Callable[..., RunningProxy],
) -> None:
    write_creds(creds_path)
    proxy = make_proxy(qwen_config())

    def rotate_then_quota(request: Any) -> Canned | None:
        if request.path.endswith("/chat/completions") and len(fake_upstream.requests_to(request.path)) == 1:
            write_creds(creds_path, access="at-cli")  # the qwen CLI rotated the token meanwhile
            qwen.access_tokens.add("at-cli")
            return Canned(status=503, json=QUOTA)
        return qwen(request)

    fake_upstream.handler = rotate_then_quota
    assert post(proxy).status_code == 200
    sent = fake_upstream.requests_to("/v1/chat/completions")
    assert [r.headers["authorization"] for r in sent] == ["Bearer at-0", "Bearer at-cli"]


def test_retry_disabled_surfaces_the_first_429(qwen: QwenService, fake_upstream: FakeUpstream, creds_path: Path,
                                               qwen_config: Callable[..., Path],
                                               make_proxy: Callable[..., RunningProxy]) -> None:
    write_creds(creds_path)
    fake_upstream.queue(Canned(status=429, json={"error": {"message": "no"}}, headers={"Retry-After": "1"}))
    response = post(make_proxy(qwen_config(enable_qwen_oauth_initial_rate_limit_retry=False)))
    assert response.status_code == 429 and len(fake_upstream.requests_to("/v1/chat/completions")) == 1
