"""Learned cooldowns in one process: a Retry-After is honoured by the requests that follow."""

from __future__ import annotations

import pytest

from hookproxy.testing import Canned
from tests.conftest import PROXY_KEY

USER = [{"role": "user", "content": "hello"}]


def ask(running, model="up:m1"):
    with running.client() as client:
        return client.post("/v1/chat/completions", json={"model": model, "messages": USER},
                           headers={"authorization": f"Bearer {PROXY_KEY}"})


@pytest.mark.parametrize("status", [429, 503, 529])
def test_a_retry_after_keeps_later_requests_away_from_the_backend(proxy_for, fake_upstream, status):
    running = proxy_for({"failure_handling": {"max_silent_wait": 5}})
    fake_upstream.queue(Canned(status=status, json={"error": {"message": "busy"}}, headers={"retry-after": "60"}))
    assert ask(running).status_code == status
    later = ask(running)
    assert later.status_code == 429 and 55 <= int(later.headers["retry-after"]) <= 60
    assert "cooling down" in later.json()["error"]["message"]
    assert len(fake_upstream.requests_to()) == 1
    health = running.client().get("/health", headers={"authorization": f"Bearer {PROXY_KEY}"}).json()
    assert health["backends"]["up"]["cooling_down_seconds"] > 55


def test_learn_cooldowns_off_sends_every_request_upstream(proxy_for, fake_upstream):
    running = proxy_for({"failure_handling": {"max_silent_wait": 5, "learn_cooldowns": False}})
    fake_upstream.queue(Canned(status=429, json={"error": {"message": "busy"}}, headers={"retry-after": "60"}))
    assert ask(running).status_code == 429
    assert ask(running).status_code == 200
    assert len(fake_upstream.requests_to()) == 2
