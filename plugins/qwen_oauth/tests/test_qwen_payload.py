"""The body qwen-oauth sends upstream, as the fake Qwen service records it (raw JSON clients)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hookproxy.testing import FakeUpstream, RunningProxy
from hookproxy_qwen_oauth.testing import QwenService, write_creds

ProxyMaker = Callable[..., RunningProxy]
USER = [{"role": "user", "content": "hi"}]


@pytest.fixture
def sent(qwen: QwenService, fake_upstream: FakeUpstream, creds_path: Path, qwen_config: Callable[..., Path],
         make_proxy: ProxyMaker) -> Callable[..., dict[str, Any]]:
    """``sent(body, **extra)``: post a raw JSON body; return what the Qwen service received."""
    write_creds(creds_path)

    def post(body: dict[str, Any], **extra: Any) -> dict[str, Any]:
        proxy = make_proxy(qwen_config(**extra))
        with proxy.client() as client:
            response = client.post("/v1/chat/completions", json={"model": "coder-model", "messages": USER, **body})
        assert response.status_code == 200, response.text
        payload: dict[str, Any] = fake_upstream.requests_to("/v1/chat/completions")[-1].json
        return payload

    return post


def test_null_values_are_dropped(sent):
    payload = sent({"temperature": None, "max_tokens": None, "stop": None, "seed": 7})
    assert "temperature" not in payload and "max_tokens" not in payload and "stop" not in payload
    assert payload["seed"] == 7


def test_top_p_and_top_k_strings_are_coerced_and_junk_is_dropped(sent, caplog):
    caplog.set_level("DEBUG", logger="hookproxy.qwen_oauth")
    payload = sent({"top_p": "0.8", "top_k": "40"})
    assert payload["top_p"] == 0.8 and isinstance(payload["top_p"], float)
    assert payload["top_k"] == 40 and isinstance(payload["top_k"], int)
    payload = sent({"top_p": "high", "top_k": "many"})
    assert "top_p" not in payload and "top_k" not in payload
    assert "dropping top_p='high'" in caplog.text


def test_a_literal_extra_body_is_merged_into_the_top_level_and_its_keys_win(sent):
    payload = sent({"temperature": 0.9, "extra_body": {"temperature": 0.2, "enable_thinking": False,
                                                        "top_k": "20"}})
    assert "extra_body" not in payload
    assert payload["temperature"] == 0.2 and payload["enable_thinking"] is False and payload["top_k"] == 20


def test_the_think_switch_is_off_by_default(sent):
    assert sent({})["messages"] == USER


def test_the_think_switch_appends_to_the_last_user_or_system_message_when_enabled(sent):
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"}, {"role": "tool", "content": "42", "tool_call_id": "t"}]
    payload = sent({"messages": messages}, enable_qwen_think_soft_switch=True)
    assert [m["content"] for m in payload["messages"]] == ["be brief", "hi /think", "hello", "42"]
    assert sent({"messages": [{"role": "user", "content": "hi /think"}]},
                enable_qwen_think_soft_switch=True)["messages"][0]["content"] == "hi /think"
    assert sent({"reasoning_effort": "low"}, enable_qwen_think_soft_switch=True)["messages"] == USER
    parts = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert sent({"messages": parts}, enable_qwen_think_soft_switch=True)["messages"] == parts


def test_the_think_switch_setting_is_validated(qwen_config, make_proxy):
    from hookproxy import ConfigError
    from hookproxy.factory import build_proxy

    with pytest.raises(ConfigError, match="enable_qwen_think_soft_switch"):
        build_proxy(qwen_config(enable_qwen_think_soft_switch="maybe"), {})


def test_the_original_top_level_credentials_path_is_read(qwen: QwenService, fake_upstream: FakeUpstream,
                                                         creds_path: Path, write_config: Callable[..., Path],
                                                         make_proxy: ProxyMaker) -> None:
    from .conftest import instance

    write_creds(creds_path)
    block = instance(fake_upstream, creds_path)
    block["credentials_path"] = block["extra"].pop("credentials_path")  # where the original had it
    proxy = make_proxy(write_config({"default_backend": "qwen-oauth"}, {"qwen-oauth.test": block}))
    with proxy.client() as client:
        response = client.post("/v1/chat/completions", json={"model": "coder-model", "messages": USER})
    assert response.status_code == 200
