"""MiniMax-M2 reasons, Qwen answers: through ``python -m hookproxy`` and the official openai SDK.

The CLI loads every installed plugin, so this also shows that a ``qwen-oauth`` block with
``connector: openai-compatible`` wins over the qwen-oauth plugin's own connector (exact backend
ids beat connector aliases) when that plugin is installed.
"""

from __future__ import annotations

import subprocess
import sys

import openai
import pytest
import yaml

from hookproxy.testing import run_cli_proxy

KEY = "sk-proxy-cli"


@pytest.fixture
def config_path(fakes, tmp_path):
    config = {**fakes.config(), "auth": {"api_keys": [KEY]}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_the_seed_spec_streams_reasoning_then_an_answer_to_the_sdk(config_path, fakes, kit):
    fakes.minimax.queue(kit.minimax_stream())
    fakes.qwen.queue(kit.answer_stream(), kit.Canned(json=kit.chat_completion("<think>x</think>Hello world")))
    with run_cli_proxy("--config", str(config_path)) as (url, _process):
        client = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)
        reasoning, content, order = "", "", []
        for event in client.chat.completions.create(model=kit.SEED_SPEC, messages=kit.USER, stream=True):
            delta = event.choices[0].delta if event.choices else None
            if delta is not None and getattr(delta, "reasoning_content", None):
                reasoning += delta.reasoning_content  # type: ignore[attr-defined]
                order.append("reasoning")
            if delta is not None and delta.content:
                content += delta.content
                order.append("content")
        assert reasoning == "Plan: use a loop."
        assert content == "Hello world"
        assert order == sorted(order, key=lambda kind: kind == "content")  # all reasoning first
        kit.wait_closed(fakes.minimax)

        fakes.minimax.queue(kit.minimax_stream())
        raw = client.chat.completions.with_raw_response.create(model=kit.SEED_SPEC, messages=kit.USER)
        message = raw.parse().choices[0].message
        assert raw.headers["x-hookproxy-hybrid"].startswith("reasoning=used")
        assert message.content == "Hello world"
        assert getattr(message, "reasoning_content", None) == "Plan: use a loop."
    assert len(fakes.qwen.requests_to()) == 2  # the execution went to the qwen-oauth *block*


def test_the_probability_flag_alias_and_a_bad_spec_from_the_command_line(config_path, fakes, kit):
    with run_cli_proxy("--config", str(config_path), "--reasoning_injection_probability", "0") as (url, _process):
        client = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)
        raw = client.chat.completions.with_raw_response.create(model=kit.SEED_SPEC, messages=kit.USER)
        assert raw.headers["x-hookproxy-hybrid"] == "reasoning=skipped; reason=probability"
        with pytest.raises(openai.BadRequestError, match="Expected exactly 2 models"):
            client.chat.completions.create(model="hybrid:[minimax:MiniMax-M2]", messages=kit.USER)
    assert fakes.minimax.requests == []


def test_the_qwen_oauth_block_wins_over_an_installed_qwen_oauth_plugin(config_path):
    result = subprocess.run([sys.executable, "-m", "hookproxy", "plugins", "--config", str(config_path)],
                            capture_output=True, text=True, timeout=60, check=True)
    assert "  qwen-oauth [openai-compatible]: ready" in result.stdout
