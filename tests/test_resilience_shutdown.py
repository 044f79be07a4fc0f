"""Graceful shutdown: SIGTERM lets an in-flight stream finish and refuses new connections."""

from __future__ import annotations

import re
import signal
import threading
import time

import httpx
import pytest

from hookproxy.testing import Canned, content_stream, run_cli_proxy
from tests.conftest import PROXY_KEY, upstream_block

USER = [{"role": "user", "content": "hello"}]


def test_sigterm_lets_an_in_flight_stream_finish(fake_upstream, write_config):
    fake_upstream.queue(Canned(sse=content_stream(["a", "b", "c", "d", "e"]), delay=0.25))
    path = write_config({"backends": {"up": upstream_block(fake_upstream)}})
    lines: list[str] = []
    first_event = threading.Event()

    def consume(url: str) -> None:
        with httpx.Client(timeout=10) as client, client.stream(
            "POST", url + "/v1/chat/completions", json={"model": "up:m1", "messages": USER, "stream": True},
            headers={"authorization": f"Bearer {PROXY_KEY}"},
        ) as response:
            for line in response.iter_lines():
                lines.append(line)
                if line.startswith("data: "):
                    first_event.set()

    with run_cli_proxy("--config", str(path), "--api-key", PROXY_KEY, "--shutdown-grace-period", "10",
                       env={"HOOKPROXY_DISABLE_PLUGINS": "qwen-oauth,hybrid"}) as (
        url, process
    ):
        reader = threading.Thread(target=consume, args=(url,))
        reader.start()
        assert first_event.wait(10)
        process.send_signal(signal.SIGTERM)
        refused = finished_before_refusal = False
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not refused:
            try:
                httpx.get(url + "/health", timeout=0.5)
            except httpx.TransportError:
                refused = True
                finished_before_refusal = "data: [DONE]" in lines
            time.sleep(0.05)
        reader.join(10)
        # uvicorn re-raises SIGTERM after its graceful shutdown, so the exit status is -SIGTERM.
        assert process.wait(10) in (0, -signal.SIGTERM)
    assert refused
    assert not finished_before_refusal  # new connections were refused while the stream still ran
    assert [line for line in lines if line][-1] == "data: [DONE]"
    assert fake_upstream.stream_log[-1].finished


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["one-process", "two-workers"])
def test_streams_longer_than_the_grace_period_end_with_one_error_event_and_one_log_line(
    fake_upstream, write_config, workers
):
    streams = 4
    for _ in range(streams):
        fake_upstream.queue(Canned(sse=content_stream([str(index) for index in range(40)]), delay=0.25))
    path = write_config({"backends": {"up": upstream_block(fake_upstream)}})
    bodies: list[list[str]] = [[] for _ in range(streams)]
    started = threading.Barrier(streams + 1, timeout=15)

    def consume(url: str, lines: list[str]) -> None:
        with httpx.Client(timeout=20) as client, client.stream(
            "POST", url + "/v1/chat/completions", json={"model": "up:m1", "messages": USER, "stream": True},
            headers={"authorization": f"Bearer {PROXY_KEY}"},
        ) as response:
            waiting = True
            for line in response.iter_lines():
                lines.append(line)
                if waiting and line.startswith("data: "):
                    waiting = False
                    started.wait()

    with run_cli_proxy("--config", str(path), "--api-key", PROXY_KEY, "--shutdown-grace-period", "1", *workers,
                       env={"HOOKPROXY_DISABLE_PLUGINS": "qwen-oauth,hybrid"}, timeout=60) as (url, process):
        readers = [threading.Thread(target=consume, args=(url, lines)) for lines in bodies]
        for reader in readers:
            reader.start()
        started.wait()
        process.send_signal(signal.SIGTERM)
        for reader in readers:
            reader.join(20)
        assert process.wait(20) in (0, -signal.SIGTERM)
        output = process.stdout.read() if process.stdout else ""
    for lines in bodies:
        events = [line for line in lines if line.startswith("data: ")]
        assert events[-1].startswith('data: {"error"') and "shutting down" in events[-1], events[-3:]
        assert sum(event.startswith('data: {"error"') for event in events) == 1
    assert "Traceback" not in output and "Cancel" not in output, output
    # One line per process that had streams to end (with workers, each ends its own).
    ended = [int(count) for count in re.findall(r"shutting down: ending (\d+) streams?", output)]
    assert sum(ended) == streams and len(ended) <= max(1, len(workers) and 2), output
    assert sum(1 for line in output.splitlines() if "stream" in line and "WARNING" in line) == len(ended), output
