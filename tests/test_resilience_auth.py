"""Brute-force protection on the proxy key."""

from __future__ import annotations

import httpx
import pytest

from hookproxy.bruteforce import BruteForceGuard
from hookproxy.errors import RateLimited
from tests.conftest import PROXY_KEY

USER = [{"role": "user", "content": "hello"}]


def _ask(client: httpx.Client, key: str) -> httpx.Response:
    response = client.post("/v1/chat/completions", json={"model": "up:m1", "messages": USER},
                           headers={"authorization": f"Bearer {key}"})
    return response


def test_repeated_bad_keys_are_throttled_with_429_and_retry_after(proxy_for):
    running = proxy_for()
    with running.client() as client:
        assert [_ask(client, "wrong").status_code for _ in range(5)] == [401] * 5
        blocked = _ask(client, "wrong")
    assert blocked.status_code == 429
    assert blocked.headers["retry-after"] == "30"
    assert blocked.json()["error"]["type"] == "rate_limit_error"


def test_a_valid_key_always_gets_in_even_from_a_blocked_address(proxy_for):
    """Anyone behind the same NAT (or any local process) must not be able to lock users out."""
    running = proxy_for()
    with running.client() as client:
        assert [_ask(client, "wrong").status_code for _ in range(5)] == [401] * 5
        assert _ask(client, "wrong").status_code == 429
        assert [_ask(client, PROXY_KEY).status_code for _ in range(3)] == [200] * 3
        assert _ask(client, "wrong").status_code == 429  # a good key does not lift the block


def test_a_good_key_does_not_reset_the_count_of_failures(proxy_for):
    """Else a busy user would let a neighbour on the same address guess forever."""
    running = proxy_for()
    with running.client() as client:
        assert [_ask(client, "wrong").status_code for _ in range(4)] == [401] * 4
        assert _ask(client, PROXY_KEY).status_code == 200
        assert [_ask(client, "wrong").status_code for _ in range(2)] == [401, 429]


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    fake = _Clock()
    monkeypatch.setattr("hookproxy.bruteforce.time.monotonic", fake)
    return fake


def _fail(guard: BruteForceGuard, times: int, client: str = "10.0.0.1") -> None:
    for _ in range(times):
        guard.failure(client)


def test_blocks_double_and_are_capped(clock):
    guard = BruteForceGuard(max_failures=2, block=30, factor=2, cap=100)
    seen = []
    for _ in range(4):
        _fail(guard, 2)
        with pytest.raises(RateLimited) as blocked:
            guard.check("10.0.0.1")
        seen.append(blocked.value.retry_after)
        clock.now += 200
        guard.check("10.0.0.1")  # the block expired
    assert seen == [30, 60, 100, 100]


def test_failures_outside_the_window_do_not_add_up(clock):
    guard = BruteForceGuard(max_failures=3, window=900)
    _fail(guard, 2)
    clock.now += 901
    _fail(guard, 2)
    guard.check("10.0.0.1")
    guard.check("10.0.0.2")


def test_other_addresses_are_not_blocked(clock):
    guard = BruteForceGuard(max_failures=1)
    _fail(guard, 1)
    with pytest.raises(RateLimited):
        guard.check("10.0.0.1")
    guard.check("10.0.0.2")
    guard.success("10.0.0.1")
    guard.check("10.0.0.1")
    assert not guard.active


def test_the_table_is_bounded_under_a_scan_from_many_addresses(clock):
    guard = BruteForceGuard(max_failures=5, max_clients=100)
    for index in range(5000):
        guard.failure(f"10.{index // 65536}.{index // 256 % 256}.{index % 256}")
        assert len(guard._records) <= 100
    _fail(guard, 5, "192.0.2.1")  # a recent attacker is still blocked
    with pytest.raises(RateLimited):
        guard.check("192.0.2.1")
