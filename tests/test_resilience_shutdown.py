"""Graceful shutdown: SIGTERM lets an in-flight stream finish and refuses new connections."""

from __future__ import annotations

import signal
import threading
import time

import httpx

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
