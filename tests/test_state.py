"""The shared-state API: the in-process and the Redis implementations pass the same tests.

Then what only Redis can show: two processes' states sharing one server (each test starts its
own redis-server on a free loopback port), and a server killed and restarted underneath.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from hookproxy.errors import ConfigError
from hookproxy.redis_state import RedisState
from hookproxy.state import InProcessState, SharedState, check_state_url, open_state, redact_url
from hookproxy.testing import RedisServer, eventually_async


@pytest.fixture(params=["in-process", "redis"])
async def state(request: pytest.FixtureRequest) -> AsyncIterator[SharedState]:
    if request.param == "in-process":
        made: SharedState = InProcessState()
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        made = open_state(server.url)
    await made.start()
    yield made
    await made.aclose()


@pytest.fixture
async def make_state(redis_server: RedisServer) -> AsyncIterator[Callable[..., Any]]:
    """Several RedisStates on the test's server: each stands for one proxy process."""
    made: list[RedisState] = []

    async def make(**kwargs: Any) -> RedisState:
        state = RedisState(redis_server.url, **kwargs)
        await state.start()
        made.append(state)
        return state

    yield make
    for state in made:
        await state.aclose()


# --- the same tests for both implementations ------------------------------------------------------


async def test_a_value_is_read_locally_until_it_expires(state: SharedState) -> None:
    table = state.table("cooldown")
    assert not table and table.peek("a") is None and table.seconds_left("a") == 0.0
    await table.set("a", {"status": 429}, ttl=30)
    assert table and table.peek("a") == {"status": 429}
    assert 29 < table.seconds_left("a") <= 30
    assert await table.get("a") == {"status": 429}
    await table.set("short", 1, ttl=0.05)
    await asyncio.sleep(0.2)
    assert table.peek("short") is None and await table.get("short") is None


async def test_delete_removes_a_value(state: SharedState) -> None:
    table = state.table("t")
    await table.set("a", "x", ttl=30)
    await table.delete("a")
    assert table.peek("a") is None and await table.get("a") is None and not table


async def test_counters_count_and_reset(state: SharedState) -> None:
    table = state.table("failures")
    assert [await table.incr("client", ttl=30) for _ in range(3)] == [1, 2, 3]
    assert await table.incr("other", ttl=30) == 1
    await table.reset("client")
    assert await table.incr("client", ttl=30) == 1


async def test_a_lock_is_exclusive_and_expires(state: SharedState) -> None:
    async with state.lock("refresh", ttl=30, wait=0) as first:
        assert first
        async with state.lock("refresh", ttl=30, wait=0.1) as second:
            assert not second
    async with state.lock("refresh", ttl=30, wait=0) as again:
        assert again
    async with state.lock("dead-holder", ttl=0.1, wait=0) as held:
        assert held
        # The holder never releases (it "died"): its expiry frees the lock for the next caller.
        async with state.lock("dead-holder", ttl=30, wait=5) as taken_over:
            assert taken_over


async def test_put_values_are_fetched_until_they_expire(state: SharedState) -> None:
    await state.put("resp_1", [{"role": "user", "content": "hi"}], ttl=30)
    assert await state.fetch("resp_1") == [{"role": "user", "content": "hi"}]
    assert await state.fetch("resp_2") is None
    await state.put("short", 1, ttl=0.05)
    await asyncio.sleep(0.2)
    assert await state.fetch("short") is None


async def test_published_messages_reach_this_process_too(state: SharedState) -> None:
    received: list[Any] = []
    state.subscribe("news", received.append)
    await state.publish("news", {"n": 1})
    await state.publish("other", {"n": 2})
    assert received == [{"n": 1}]


async def test_set_soon_applies_locally_at_once_and_writes_in_the_background(state: SharedState) -> None:
    table = state.table("backoff")
    table.set_soon("qwen", 1, ttl=30)
    assert table.peek("qwen") == 1
    await state.aclose()  # waits for background writes
    assert await table.get("qwen") == 1


# --- shared between processes (Redis) ----------------------------------------------------------------


async def test_a_write_in_one_process_reaches_the_others_local_copy(make_state: Callable[..., Any]) -> None:
    one, two = await make_state(), await make_state()
    two.table("cooldown")  # a process reads the tables it uses
    await one.table("cooldown").set("minimax", {"status": 429}, ttl=30)
    await eventually_async(lambda: two.table("cooldown").peek("minimax"), what="the mirror update")
    assert 28 < two.table("cooldown").seconds_left("minimax") <= 30
    await one.table("cooldown").delete("minimax")
    await eventually_async(lambda: two.table("cooldown").peek("minimax") is None, what="the delete")


async def test_a_late_process_and_a_lost_message_are_caught_up_by_reconcile(
    make_state: Callable[..., Any], redis_server: RedisServer
) -> None:
    one = await make_state()
    await one.table("cooldown").set("minimax", "x", ttl=30)
    late = await make_state(reconcile_interval=0.1)
    late.table("cooldown")
    await eventually_async(lambda: late.table("cooldown").peek("minimax") == "x", what="the first reconcile")
    client = late._require()
    await client.set("hookproxy:m:cooldown:dashscope", b'"y"', px=30_000)  # written without a message
    await eventually_async(lambda: late.table("cooldown").peek("dashscope") == "y", what="a later reconcile")


async def test_counters_locks_messages_and_put_values_are_shared(make_state: Callable[..., Any]) -> None:
    one, two = await make_state(), await make_state()
    await one.put("resp_1", {"items": [1, 2]}, ttl=30)
    assert await two.fetch("resp_1") == {"items": [1, 2]}
    assert await one.table("f").incr("c", ttl=30) == 1
    assert await two.table("f").incr("c", ttl=30) == 2
    received: list[Any] = []
    two.subscribe("tokens", received.append)
    await one.publish("tokens", {"new": "t1"})
    await eventually_async(lambda: received, what="the message")
    assert received == [{"new": "t1"}]
    async with one.lock("refresh", ttl=30, wait=0) as held:
        assert held
        async with two.lock("refresh", ttl=30, wait=0.1) as other:
            assert not other
    async with two.lock("refresh", ttl=30, wait=0) as after:
        assert after


async def test_redis_down_keeps_local_state_and_reconnects_by_itself(
    make_state: Callable[..., Any], redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    one, two = await make_state(), await make_state()
    two.table("cooldown")
    redis_server.stop()
    await eventually_async(lambda: not one.up and not two.up, what="noticing the outage")
    table = one.table("cooldown")
    await table.set("minimax", "while-down", ttl=30)  # does not raise
    assert table.peek("minimax") == "while-down"
    assert await table.incr("n", ttl=30) == 1
    async with one.lock("refresh", ttl=30, wait=0) as held:
        assert held
    assert f"Redis at {redis_server.url} is unreachable" in caplog.text
    redis_server.start()  # the same port
    await eventually_async(lambda: one.up and two.up, what="reconnecting")
    await eventually_async(lambda: two.table("cooldown").peek("minimax") == "while-down",
                           what="the write made during the outage reaching the other process")
    assert "reconnected to Redis" in caplog.text


async def test_unreachable_at_start_is_a_warning_not_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    from hookproxy.testing import free_port

    state = open_state(f"redis://:s3cret@127.0.0.1:{free_port()}/0")
    await state.start()
    try:
        table = state.table("t")
        await table.set("a", 1, ttl=30)
        assert table.peek("a") == 1
        assert "is unreachable" in caplog.text and "s3cret" not in caplog.text and ":***@" in caplog.text
    finally:
        await state.aclose()


# --- URLs -------------------------------------------------------------------------------------------


def test_passwords_are_redacted() -> None:
    assert redact_url("redis://:pw@h:6379/0") == "redis://:***@h:6379/0"
    assert redact_url("rediss://user:pw@h/1") == "rediss://user:***@h/1"
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"


@pytest.mark.parametrize("url", ["http://h:6379", "redis://:pw@h:notaport/0", "redis:///0", "redis://h/zero",
                                 "unix://"])
def test_bad_urls_are_one_line_config_errors_without_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_state_url(url)
    message = caught.value.message
    assert "\n" not in message and "pw" not in message and "HOOKPROXY_STATE" in message
