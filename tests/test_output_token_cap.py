"""A backend instance's ``max_output_tokens``: what a client asks for beyond it is lowered to it
before the backend sees the request, per backend of a chain; less is sent as asked."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import openai
import pytest

from hookproxy.testing import Canned, FakeUpstream, RunningProxy, run_cli_proxy
from tests.conftest import PROXY_KEY, core_pm, upstream_block

USER = [{"role": "user", "content": "hello"}]


def sdk(proxy_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy_url + "/v1", api_key=PROXY_KEY, max_retries=0)


@pytest.fixture
def capped(fake_upstream: FakeUpstream, write_config: Callable[..., Path],
           make_proxy: Callable[..., RunningProxy]) -> openai.OpenAI:
    """An OpenAI client of a proxy whose default backend ``up`` allows 8192 output tokens."""
    path = write_config({"default_backend": "up", "auth": {"api_keys": [PROXY_KEY]},
                         "backends": {"up": upstream_block(fake_upstream, max_output_tokens=8192)}})
    return sdk(make_proxy(path, {}, pm=core_pm()).url)


def test_a_larger_max_tokens_reaches_the_backend_as_its_cap(capped, fake_upstream):
    reply = capped.chat.completions.create(model="m1", messages=USER, max_tokens=32000)

    assert reply.choices[0].message.content == "echo: hello"
    assert fake_upstream.requests_to()[-1].json["max_tokens"] == 8192


def test_max_completion_tokens_is_capped_too_and_streams_as_well(capped, fake_upstream):
    stream = capped.chat.completions.create(model="m1", messages=USER, max_completion_tokens=100_000, stream=True)

    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices) == "echo: hello"
    sent = fake_upstream.requests_to()[-1].json
    assert sent["max_completion_tokens"] == 8192 and "max_tokens" not in sent


def test_a_smaller_value_is_sent_as_the_client_asked(capped, fake_upstream):
    capped.chat.completions.create(model="m1", messages=USER, max_tokens=512, max_completion_tokens=8192)

    sent = fake_upstream.requests_to()[-1].json
    assert (sent["max_tokens"], sent["max_completion_tokens"]) == (512, 8192)


def test_without_a_cap_the_request_is_sent_as_asked(proxy_for, fake_upstream):
    sdk(proxy_for().url).chat.completions.create(model="m1", messages=USER, max_tokens=32000)

    assert fake_upstream.requests_to()[-1].json["max_tokens"] == 32000


def test_each_backend_of_a_chain_gets_its_own_cap(fake_upstream, make_fake_upstream, write_config, make_proxy):
    second = make_fake_upstream()
    fake_upstream.queue(Canned(status=500, json={"error": {"message": "down for maintenance"}}))
    path = write_config({"auth": {"api_keys": [PROXY_KEY]}, "backends": {
        "small": upstream_block(fake_upstream, max_output_tokens=4096),
        "large": upstream_block(second, max_output_tokens=16384)}})
    client = sdk(make_proxy(path, {}, pm=core_pm()).url)

    reply = client.chat.completions.with_raw_response.create(model="small:m1|large:m2", messages=USER,
                                                             max_tokens=32000)

    assert reply.headers["x-hookproxy-backend"] == "large"
    assert fake_upstream.requests_to()[-1].json["max_tokens"] == 4096
    assert second.requests_to()[-1].json["max_tokens"] == 16384


def test_an_instance_file_sets_the_cap_for_the_served_proxy(fake_upstream, write_config):
    path = write_config({"default_backend": "local", "auth": {"api_keys": [PROXY_KEY]}},
                        instances={"openai-compatible.local": {"api_url": fake_upstream.url,
                                                               "max_output_tokens": 2048}})
    with run_cli_proxy("--config", str(path)) as (url, _process):
        sdk(url).chat.completions.create(model="m1", messages=USER, max_tokens=32000)

    assert fake_upstream.requests_to()[-1].json["max_tokens"] == 2048


@pytest.mark.parametrize("value", [0, "lots", True])
def test_a_cap_that_is_not_a_positive_whole_number_is_a_one_line_start_up_error(value, fake_upstream, write_config):
    path = write_config({"default_backend": "local"},
                        instances={"openai-compatible.local": {"api_url": fake_upstream.url,
                                                               "max_output_tokens": value}})
    done = subprocess.run([sys.executable, "-m", "hookproxy", "check", "--config", str(path)],
                          capture_output=True, text=True, timeout=60)

    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "max_output_tokens" in lines[0] and "openai-compatible.local" in lines[0]
