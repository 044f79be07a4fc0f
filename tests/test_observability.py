"""Metrics, request ids, the access log and per-key usage, as an operator meets them.

Traffic goes through the official openai SDK; ``/metrics`` and ``/-/usage`` are read over HTTP
like a scraper would; log lines are read from a proxy started by the CLI.
"""

from __future__ import annotations

import json
import re
import time

import httpx
import openai
import pytest

import hookproxy.exporters.access_log
import hookproxy.exporters.metrics
import hookproxy.exporters.usage
from hookproxy.testing import Canned, content_stream, run_cli_proxy, usage_chunk, write_config
from tests.conftest import PROXY_KEY, UPSTREAM_KEY, upstream_block

USER = [{"role": "user", "content": "hello"}]
AUTH = {"authorization": f"Bearer {PROXY_KEY}"}
EXPORTERS = (("metrics", hookproxy.exporters.metrics), ("access-log", hookproxy.exporters.access_log),
             ("usage", hookproxy.exporters.usage))


def sample(page: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text page (0 when absent)."""
    for line in page.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
        if all(found.get(key) == value for key, value in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def scrape(url: str) -> str:
    response = httpx.get(url + "/metrics", headers=AUTH)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return response.text


def settle(url: str, requests: float) -> str:
    """Observers run after the last byte went out: wait (bounded) until they counted ``requests``."""
    deadline = time.monotonic() + 5
    while True:
        page = scrape(url)
        total = sum(float(line.rsplit(" ", 1)[1]) for line in page.splitlines()
                    if line.startswith("hookproxy_requests_total{"))
        if total >= requests or time.monotonic() > deadline:
            return page
        time.sleep(0.02)


@pytest.fixture
def two(make_fake_upstream, write_config, make_proxy):
    """A proxy with backends a and b (two fake upstreams) and the built-in exporters."""
    from tests.conftest import core_pm

    a, b = make_fake_upstream(), make_fake_upstream()
    path = write_config({"default_backend": "a", "auth": {"api_keys": [PROXY_KEY, "sk-second-key"]},
                         "failure_handling": {"min_retry_wait": 0.01},
                         "backends": {"a": upstream_block(a), "b": upstream_block(b)}})
    running = make_proxy(path, pm=core_pm(*EXPORTERS))
    return running, a, b


def test_metrics_count_traffic_latency_tokens_and_failovers(two):
    running, a, b = two
    sdk = openai.OpenAI(base_url=running.url + "/v1", api_key=PROXY_KEY, max_retries=0)
    sdk.chat.completions.create(model="m1", messages=USER)
    a.queue(Canned(sse=[*content_stream(["Hi"]), usage_chunk(prompt=20, completion=4)]))
    assert "".join(c.choices[0].delta.content or "" for c in
                   sdk.chat.completions.create(model="m1", messages=USER, stream=True)) == "Hi"
    a.queue(Canned(status=500, json={"error": {"message": "boom"}}))
    sdk.chat.completions.create(model="a:m2|b:m2", messages=USER)  # fails over to b
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(model="nowhere:m1", messages=USER)
    page = settle(running.url, 4)
    assert sample(page, "hookproxy_requests_total", frontend="openai-chat", backend="a", model="m1",
                  status_class="2xx") == 2
    assert sample(page, "hookproxy_requests_total", backend="b", model="m2", status_class="2xx") == 1
    assert sample(page, "hookproxy_requests_total", backend="none", status_class="4xx") == 1
    assert sample(page, "hookproxy_tokens_total", backend="a", model="m1", type="input") == 1 + 20
    assert sample(page, "hookproxy_tokens_total", backend="a", model="m1", type="output") == 1 + 4
    assert sample(page, "hookproxy_upstream_errors_total", backend="a", kind="http") == 1
    assert sample(page, "hookproxy_failovers_total", backend="a") == 1
    assert sample(page, "hookproxy_request_duration_seconds_count", frontend="openai-chat", backend="a") == 2
    assert sample(page, "hookproxy_proxy_overhead_seconds_count", frontend="openai-chat") == 4
    assert sample(page, "gen_ai_server_time_to_first_token_seconds_count", backend="a", model="m1") == 1
    assert sample(page, "hookproxy_backend_usable", backend="a") == 1
    assert "hookproxy_requests_in_flight" in page
    assert PROXY_KEY not in page and UPSTREAM_KEY not in page
    assert httpx.get(running.url + "/metrics").status_code == 401


def test_a_client_chosen_model_does_not_grow_the_label_set(two):
    running, _a, _b = two
    sdk = openai.OpenAI(base_url=running.url + "/v1", api_key=PROXY_KEY, max_retries=0)
    for index in range(3):
        sdk.chat.completions.create(model=f"made-up-{index}", messages=USER)
    page = settle(running.url, 3)
    assert "made-up" not in page
    assert sample(page, "hookproxy_requests_total", backend="a", model="other") == 3


def test_request_ids_come_back_on_answers_errors_and_streams_and_reach_the_upstream(two):
    running, a, _b = two
    with httpx.Client(base_url=running.url, headers=AUTH) as client:
        body = {"model": "m1", "messages": USER}
        answer = client.post("/v1/chat/completions", json=body, headers={"x-request-id": "trace-42"})
        assert answer.headers["x-request-id"] == "trace-42"
        assert a.requests_to()[-1].headers["x-request-id"] == "trace-42"
        assert float(answer.headers["x-hookproxy-overhead-ms"]) >= 0
        unsafe = "a <script> " + "x" * 200  # not a short token of safe characters: replaced
        error = client.post("/v1/chat/completions", json={"model": "m1"}, headers={"x-request-id": unsafe})
        assert error.status_code == 400 and re.fullmatch(r"[0-9a-f]{16}", error.headers["x-request-id"])
        with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as stream:
            stream.read()
            made = stream.headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{16}", made) and a.requests_to()[-1].headers["x-request-id"] == made
        for path in ("/v1/models", "/health", "/metrics", "/no/such/path"):
            assert client.get(path, headers={"x-request-id": "other-7"}).headers["x-request-id"] == "other-7"


def test_usage_per_key_counts_tokens_without_showing_keys(two):
    running, a, _b = two
    first = openai.OpenAI(base_url=running.url + "/v1", api_key=PROXY_KEY, max_retries=0)
    second = openai.OpenAI(base_url=running.url + "/v1", api_key="sk-second-key", max_retries=0)
    first.chat.completions.create(model="m1", messages=USER)
    a.queue(Canned(sse=[*content_stream(["x"]), usage_chunk(prompt=30, completion=9, prompt_tokens_details={
        "cached_tokens": 10})]))
    list(first.chat.completions.create(model="m1", messages=USER, stream=True))
    second.chat.completions.create(model="m2", messages=USER)
    settle(running.url, 3)
    report = httpx.get(running.url + "/-/usage", headers=AUTH)
    assert report.status_code == 200
    text = report.text
    assert PROXY_KEY not in text and "sk-second-key" not in text
    keys = report.json()["keys"]
    assert len(keys) == 2 and all(re.fullmatch(r"key-[0-9a-f]{8}", key) for key in keys)
    totals = {model: row for rows in keys.values() for model, row in rows.items()}
    assert totals["m1"]["requests"] == 2 and totals["m1"]["input_tokens"] == 31
    assert totals["m1"]["output_tokens"] == 10 and totals["m1"]["cached_tokens"] == 10
    assert totals["m2"]["requests"] == 1
    assert httpx.get(running.url + "/-/usage").status_code == 401


def test_log_lines_of_a_request_carry_its_id_and_the_access_log_is_json_lines(tmp_path, fake_upstream):
    config = write_config(tmp_path, {"default_backend": "a|b", "auth": {"api_keys": [PROXY_KEY]},
                                     "failure_handling": {"min_retry_wait": 0.01},
                                     "backends": {"a": upstream_block(fake_upstream),
                                                  "b": upstream_block(fake_upstream)}})
    fake_upstream.queue(Canned(status=500, json={"error": {"message": "boom"}}))
    with run_cli_proxy("--config", str(config), "--access-log", "json") as (url, process):
        response = httpx.post(url + "/v1/chat/completions", headers={**AUTH, "x-request-id": "rid-77"},
                              json={"model": "m1", "messages": USER})
        assert response.status_code == 200
        time.sleep(0.3)
        process.terminate()
        output = process.communicate(timeout=10)[0]
    about = [line for line in output.splitlines() if "hookproxy.failover" in line]
    assert about and all("[rid-77]" in line for line in about), output
    access = next(line for line in output.splitlines() if line.startswith('{"time"'))
    record = json.loads(access)
    assert record["request_id"] == "rid-77" and record["status"] == 200 and record["backend"] == "b"
    assert record["failovers"] == 1 and record["attempts"] == 2 and record["key_id"].startswith("key-")
    assert PROXY_KEY not in output and UPSTREAM_KEY not in output


def test_a_third_party_observer_plugin_receives_events(tmp_path, fake_upstream):
    from tests.test_plugins import make_distribution

    site = tmp_path / "site"
    site.mkdir()
    events_file = tmp_path / "events.jsonl"
    make_distribution(site, "hookproxy-tally", f'''
import json
import hookproxy

@hookproxy.hookimpl
def request_ended(event):
    with open({str(events_file)!r}, "a") as handle:
        handle.write(json.dumps({{"status": event.status, "backend": event.backend, "id": event.request_id}}) + "\\n")
''', "tally")
    config = write_config(tmp_path / "cfg", {"default_backend": "a", "backends": {"a": upstream_block(fake_upstream)}})
    with run_cli_proxy("--config", str(config), env={"PYTHONPATH": str(site)}) as (url, _process):
        sdk = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        raw = sdk.chat.completions.with_raw_response.create(model="m1", messages=USER)
        deadline = time.monotonic() + 5
        while not events_file.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
    event = json.loads(events_file.read_text().splitlines()[0])
    assert event == {"status": 200, "backend": "a", "id": raw.headers["x-request-id"]}
