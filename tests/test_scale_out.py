"""Several hookproxy processes acting as one: two CLI proxies sharing a private redis-server, and
``--workers``. Every proxy here is a real ``python -m hookproxy`` process on its own port; every
Redis is started by the test on a free loopback port."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from hookproxy.testing import (
    Canned,
    FakeUpstream,
    RecordedRequest,
    RedisServer,
    content_stream,
    eventually,
    run_cli_proxy,
    write_config,
)
from tests.conftest import PROXY_KEY, upstream_block
from tests.test_cli import CORE_ONLY, assert_one_line_error, hookproxy

USER = [{"role": "user", "content": "hello"}]


def ask(url: str, model: str, key: str = PROXY_KEY) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", json={"model": model, "messages": USER},
                      headers={"authorization": f"Bearer {key}"}, timeout=30)


def health(url: str) -> dict[str, Any]:
    result: dict[str, Any] = httpx.get(url + "/health", headers={"authorization": f"Bearer {PROXY_KEY}"},
                                       timeout=5).json()
    return result


def cooling(url: str, backend: str) -> float:
    return float(health(url)["backends"][backend].get("cooling_down_seconds", 0.0))


@pytest.fixture
def two_backends(make_fake_upstream: Any, write_config: Any) -> tuple[FakeUpstream, FakeUpstream, Path]:
    a, b = make_fake_upstream(), make_fake_upstream()
    path = write_config({
        "auth": {"api_keys": [PROXY_KEY]},
        "failure_handling": {"max_silent_wait": 5},
        "failover_routes": {"rr": {"policy": "round-robin", "elements": ["a:m1", "b:m1"]}},
        "backends": {"a": upstream_block(a), "b": upstream_block(b)},
    })
    return a, b, path


@contextlib.contextmanager
def proxies(path: Path, redis: RedisServer, *extra: tuple[str, ...]) -> Iterator[list[tuple[str, Any]]]:
    """One CLI proxy per ``extra`` argument tuple, all sharing ``redis``."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(run_cli_proxy("--config", str(path), "--state", redis.url, *args, env=CORE_ONLY))
               for args in extra]


def stop(process: subprocess.Popen[str]) -> str:
    """SIGTERM the proxy and return everything it printed."""
    process.terminate()
    output, _ = process.communicate(timeout=30)
    return output


# --- shared state between hosts ------------------------------------------------------------------


def test_a_retry_after_seen_through_one_proxy_makes_the_other_skip_that_backend(two_backends, redis_server):
    a, b, path = two_backends
    a.queue(Canned(status=429, json={"error": {"message": "slow down"}}, headers={"retry-after": "30"}))
    with proxies(path, redis_server, (), ()) as [(one, _), (two, _)]:
        assert ask(one, "a:m1|b:m1").headers["x-hookproxy-backend"] == "b"
        assert len(a.requests_to()) == 1
        eventually(lambda: cooling(two, "a") > 25, what="the cooldown reaching the second proxy")
        assert ask(two, "a:m1|b:m1").headers["x-hookproxy-backend"] == "b"
        alone = ask(two, "a:m1")  # the only candidate, cooling longer than max_silent_wait
        assert alone.status_code == 429 and 25 <= int(alone.headers["retry-after"]) <= 30
        assert "cooling down" in alone.json()["error"]["message"]
        assert len(a.requests_to()) == 1 and len(b.requests_to()) == 2


def test_the_other_proxy_waits_out_a_short_cooldown_when_the_backend_is_its_only_candidate(
    two_backends, redis_server
):
    a, _b, path = two_backends
    cooldown_ends: list[float] = []

    def rate_limit_once(request: RecordedRequest) -> Canned | None:
        if not cooldown_ends:
            cooldown_ends.append(time.monotonic() + 3)
            return Canned(status=429, json={"error": {"message": "slow down"}}, headers={"retry-after": "3"})
        if time.monotonic() < cooldown_ends[0]:
            return Canned(status=429, json={"error": {"message": "called during the cooldown"}},
                          headers={"retry-after": "3"})
        return None  # echo

    a.handler = rate_limit_once
    # The first proxy fails over at once (3 s > its max_silent_wait); the second may wait 5 s.
    with proxies(path, redis_server, ("--max-silent-wait", "1"), ()) as [(one, _), (two, _)]:
        assert ask(one, "a:m1|b:m1").headers["x-hookproxy-backend"] == "b"
        eventually(lambda: cooling(two, "a") > 0, what="the cooldown reaching the second proxy")
        waited = ask(two, "a:m1")
        assert waited.status_code == 200 and waited.headers["x-hookproxy-backend"] == "a"
        assert len(a.requests_to()) == 2


def test_the_bad_key_throttle_is_counted_across_both_proxies(two_backends, redis_server):
    _a, _b, path = two_backends
    with proxies(path, redis_server, (), ()) as [(one, _), (two, _)]:
        statuses = [ask(url, "a:m1", key="wrong").status_code for url in (one, two, one, two, one)]
        assert statuses == [401] * 5
        blocked = ask(two, "a:m1", key="wrong")
        assert blocked.status_code == 429 and blocked.headers["retry-after"] == "30"
        assert ask(one, "a:m1", key="wrong").status_code == 429
        # Only failures are throttled: a valid key from the blocked address still gets in.
        assert ask(one, "a:m1").status_code == 200 and ask(two, "a:m1").status_code == 200


def test_round_robin_alternates_across_processes(two_backends, redis_server):
    _a, _b, path = two_backends
    with proxies(path, redis_server, (), ()) as [(one, _), (two, _)]:
        served = [ask(url, "rr").headers["x-hookproxy-backend"] for url in (one, two) * 4]
    assert all(first != second for first, second in zip(served, served[1:], strict=False)), served


def test_requests_are_answered_while_redis_is_down_and_sharing_resumes_after_restart(two_backends, redis_server):
    a, _b, path = two_backends
    with proxies(path, redis_server, (), ()) as [(one, first), (two, _)]:
        assert ask(one, "a:m1").status_code == 200
        redis_server.stop()
        eventually(lambda: not health(one)["shared_state"]["connected"], what="noticing the outage")
        assert [ask(url, "a:m1").status_code for url in (one, two, one, two)] == [200] * 4
        # Learned while Redis is down: kept locally, then shared once it is back.
        a.queue(Canned(status=429, json={"error": {"message": "slow down"}}, headers={"retry-after": "60"}))
        assert ask(one, "a:m1|b:m1").headers["x-hookproxy-backend"] == "b"
        assert ask(one, "a:m1|b:m1").headers["x-hookproxy-backend"] == "b"
        assert cooling(two, "a") == 0.0
        redis_server.start()
        eventually(lambda: health(one)["shared_state"]["connected"] and health(two)["shared_state"]["connected"],
                   what="reconnecting")
        eventually(lambda: cooling(two, "a") > 30, what="the outage's cooldown reaching the second proxy")
        assert ask(two, "a:m1|b:m1").headers["x-hookproxy-backend"] == "b"
        assert len(a.requests_to()) == 6  # 5 answered, 1 rate-limited, none while cooling
        output = stop(first)
    assert f"Redis at {redis_server.url} is unreachable" in output
    assert "reconnected to Redis" in output


def test_a_bad_state_url_is_one_line_exit_2_without_the_password():
    result = hookproxy("--state", "http://user:hunter2@localhost:6379/0")
    assert_one_line_error(result, "state URL", "redis://")
    assert "hunter2" not in result.stderr
    assert_one_line_error(hookproxy(env={"HOOKPROXY_STATE": "redis://localhost:6379/zero"}), "database")


def test_an_unreachable_redis_at_start_up_is_a_warning_and_requests_flow(two_backends):
    _a, _b, path = two_backends
    nowhere = RedisServer()  # a free port nobody listens on
    with run_cli_proxy("--config", str(path), "--state", nowhere.url, env=CORE_ONLY) as (url, process):
        assert ask(url, "a:m1").status_code == 200
        assert health(url)["shared_state"] == {"url": nowhere.url, "connected": False}
        output = stop(process)
    assert f"Redis at {nowhere.url} is unreachable" in output


# --- workers ---------------------------------------------------------------------------------------


def workers_of(parent: int) -> set[int]:
    """The worker processes uvicorn's supervisor started (spawned Python children of ``parent``)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == parent and b"spawn_main" in cmdline and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


def served_requests(url: str) -> float:
    """hookproxy_requests_total over every label, from one scrape of /metrics."""
    page = httpx.get(url + "/metrics", headers={"authorization": f"Bearer {PROXY_KEY}"}, timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in page.splitlines()
               if line.startswith("hookproxy_requests_total{"))


def in_flight(url: str) -> float:
    page = httpx.get(url + "/metrics", headers={"authorization": f"Bearer {PROXY_KEY}"}, timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in page.splitlines()
               if line.startswith("hookproxy_requests_in_flight"))


def test_two_workers_serve_drain_on_sigterm_and_a_killed_worker_is_replaced(fake_upstream, write_config):
    path = write_config({"auth": {"api_keys": [PROXY_KEY]}, "backends": {"up": upstream_block(fake_upstream)}})
    with run_cli_proxy("--config", str(path), "--workers", "2", "--shutdown-grace-period", "20",
                       env=CORE_ONLY, timeout=60) as (url, process):
        client = openai.OpenAI(base_url=url + "/v1", api_key=PROXY_KEY, max_retries=0)
        replies = [client.chat.completions.create(model="up:m1", messages=USER) for _ in range(6)]
        assert {reply.choices[0].message.content for reply in replies} == {"echo: hello"}
        eventually(lambda: len(workers_of(process.pid)) == 2, what="two workers")
        workers = workers_of(process.pid)
        # /metrics sums every worker, whichever one answers the scrape.
        scrapes = [served_requests(url) for _ in range(6)]
        assert scrapes == [6] * 6, scrapes

        victim = min(workers)
        subprocess.run(["kill", "-KILL", str(victim)], check=True)
        eventually(lambda: len(workers_of(process.pid) - {victim}) == 2, what="the dead worker's replacement")
        assert client.chat.completions.create(model="up:m1", messages=USER).choices[0].message.content

        fake_upstream.queue(*[Canned(sse=content_stream(list("abcdefgh")), delay=0.4) for _ in range(4)])
        finished: list[str] = []
        started = threading.Barrier(5)

        def stream() -> None:
            events = client.chat.completions.create(model="up:m1", messages=USER, stream=True)
            first = True
            text = ""
            for event in events:
                if first:
                    started.wait(10)
                    first = False
                text += event.choices[0].delta.content or "" if event.choices else ""
            finished.append(text)

        readers = [threading.Thread(target=stream) for _ in range(4)]
        for reader in readers:
            reader.start()
        started.wait(10)
        # The page counts the four streams in flight, whichever workers serve them (no stream has
        # ended, so each worker's count comes from its once-a-second write).
        eventually(lambda: in_flight(url) == 4, within=3, what="four requests in flight on /metrics")
        process.send_signal(signal.SIGTERM)
        for reader in readers:
            reader.join(30)
        assert finished == ["abcdefgh"] * 4
        assert process.wait(30) in (0, -signal.SIGTERM)
        output = process.stdout.read() if process.stdout else ""
    assert f"Child process [{victim}] died" in output
    assert output.count(" serving") >= 2, output  # each worker built its own proxy (plugins included)


def test_workers_and_state_come_from_yaml_env_or_flags(tmp_path):
    from hookproxy.config import load_config

    path = write_config(tmp_path, {"workers": 3, "state": "redis://cache:6379/2"})
    settings = load_config(path, env={}).settings
    assert (settings.workers, settings.state) == (3, "redis://cache:6379/2")
    settings = load_config(path, env={"HOOKPROXY_WORKERS": "4", "HOOKPROXY_STATE": "rediss://c/0"}).settings
    assert (settings.workers, settings.state) == (4, "rediss://c/0")
    assert load_config(path, {"workers": 5}, env={"HOOKPROXY_WORKERS": "4"}).settings.workers == 5
    assert_one_line_error(hookproxy("--workers", "0"), "workers", "greater than or equal to 1")
