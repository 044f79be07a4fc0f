"""Same-process A/B: what configuring the shared state (Redis) costs a successful request.

Why a separate check: on a shared 2-core VM the run-to-run spread of bench/run.sh (30-100 %) is
wider than the budget being checked (CPU per request at most 3 % higher, p50 at most 0.02 ms
higher). Here two proxies are built from one config in one process, one with
``state: redis://...`` (a private redis-server) and one without, and driven alternately through
their ASGI apps (no HTTP server in front, so the client costs nothing measurable), against the
test kit's fake upstream in another thread. CPU is the event-loop thread's own ``thread_time``
per request (the upstream's thread is excluded); latency is wall time per request.

    HOOKPROXY_DISABLE_PLUGINS=qwen-oauth,hybrid taskset -c 1 .venv/bin/python bench/state_overhead.py \
        [--rounds 12] [--requests 2000] [--concurrency 1]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from hookproxy.app import create_app
from hookproxy.factory import build_proxy
from hookproxy.testing import FakeUpstream, RedisServer, write_config

KEY = "sk-bench"
BODY = b'{"model":"fake","messages":[{"role":"user","content":"hello"}],"max_tokens":16}'


async def drive(app: Any, count: int, concurrency: int = 1) -> tuple[float, float]:
    """CPU seconds (this thread) and median wall seconds per request, ``concurrency`` at a time."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions",
             "query_string": b"", "root_path": "", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 9),
             "headers": [(b"authorization", f"Bearer {KEY}".encode()), (b"content-type", b"application/json"),
                         (b"content-length", str(len(BODY)).encode())]}
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    walls: list[float] = []

    async def client(share: int) -> None:
        for _ in range(share):
            started = time.perf_counter()
            await app(dict(scope), receive, send)
            walls.append(time.perf_counter() - started)

    cpu0 = time.thread_time()
    await asyncio.gather(*(client(count // concurrency) for _ in range(concurrency)))
    count = len(walls)
    cpu = time.thread_time() - cpu0
    assert set(statuses) == {200}, set(statuses)
    return cpu / count, statistics.median(walls)


async def main(rounds: int, requests: int, concurrency: int) -> None:
    upstream = FakeUpstream().start()
    redis = RedisServer().start()
    try:
        config = write_config(Path(tempfile.mkdtemp()), {
            "default_backend": "fake-upstream", "auth": {"api_keys": [KEY]},
            "backends": {"fake-upstream": {"connector": "openai-compatible", "api_url": upstream.url,
                                           "api_key": "sk-fake", "models": ["fake"]}}})
        proxies = {"without state": build_proxy(config, {}), "state: redis": build_proxy(config, {"state": redis.url})}
        apps = {}
        for name, proxy in proxies.items():
            await proxy.start()
            apps[name] = create_app(proxy)
            await drive(apps[name], 300)  # warm-up
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in apps}
        for _ in range(rounds):
            for name, app in apps.items():
                results[name].append(await drive(app, requests, concurrency))
        base_cpu = statistics.median(cpu for cpu, _ in results["without state"])
        base_p50 = statistics.median(p50 for _, p50 in results["without state"])
        print(f"{rounds} interleaved rounds x {requests} requests per proxy, {concurrency} at a time")
        for name, values in results.items():
            cpu = statistics.median(v[0] for v in values)
            p50 = statistics.median(v[1] for v in values)
            print(f"{name:>14}: CPU {cpu * 1e6:7.1f} us/req ({(cpu / base_cpu - 1) * 100:+.1f} %), "
                  f"p50 {p50 * 1e3:.3f} ms ({(p50 - base_p50) * 1e3:+.3f} ms); "
                  f"CPU per round: {', '.join(f'{v[0] * 1e6:.0f}' for v in values)}")
        for proxy in proxies.values():
            await proxy.aclose()
    finally:
        redis.stop()
        upstream.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(main(args.rounds, args.requests, args.concurrency))
    except ImportError:
        asyncio.run(main(args.rounds, args.requests, args.concurrency))
