"""The backend through a real proxy on loopback: gate, chat, streams, headers, 401 retry, health."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from hookproxy import ConfigError
from hookproxy.factory import build_proxy
from hookproxy.testing import Canned, FakeUpstream, RunningProxy, chat_completion, chunk
from hookproxy_qwen_oauth.testing import QwenService, write_creds

ProxyMaker = Callable[..., RunningProxy]
CHINESE = "请解释一下Python的装饰器"


def chat(proxy: RunningProxy, model: str = "coder-model", stream: bool = False, **body: Any) -> httpx.Response:
    payload = {"model": model, "messages": [{"role": "user", "content": CHINESE}], "stream": stream, **body}
    with proxy.client() as client:
        return client.post("/v1/chat/completions", json=payload)


def sse_text(response: httpx.Response) -> str:
    text = ""
    for line in response.text.splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[6:]).get("choices", []):
                text += choice.get("delta", {}).get("content") or ""
    return text


def test_gate_closed_is_403_before_any_io(qwen: QwenService, fake_upstream: FakeUpstream, creds_path: Path,
                                          qwen_config: Callable[..., Path], make_proxy: ProxyMaker) -> None:
    proxy = make_proxy(qwen_config(enable_qwen_oauth_backend_debugging_override=False))
    response = chat(proxy)
    assert response.status_code == 403
    message = response.json()["error"]["message"]
    assert message.startswith("Forbidden:") and "--enable-qwen-oauth-backend-debugging-override" in message
    assert fake_upstream.requests == [] and not creds_path.parent.exists()
    health = httpx.get(proxy.url + "/health").json()["backends"]["qwen-oauth.test"]
    assert health["usable"] is False and "gate closed" in health["reason"]


def test_cli_flag_opens_the_gate(qwen: QwenService, creds_path: Path, qwen_config: Callable[..., Path],
                                 make_proxy: ProxyMaker) -> None:
    write_creds(creds_path)
    path = qwen_config(enable_qwen_oauth_backend_debugging_override=False)
    proxy = make_proxy(path, {"enable_qwen_oauth_backend_debugging_override": True})
    assert chat(proxy).status_code == 200


def test_chinese_round_trips_non_streaming_and_streaming(
    qwen: QwenService, fake_upstream: FakeUpstream, creds_path: Path, qwen_config: Callable[..., Path],
    make_proxy: ProxyMaker,
) -> None:
    write_creds(creds_path)
    proxy = make_proxy(qwen_config())
    response = chat(proxy, model="qwen-oauth:coder-model")
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "echo: " + CHINESE
    streamed = chat(proxy, stream=True, stream_options={"keep": 1})
    assert streamed.status_code == 200 and sse_text(streamed) == "echo: " + CHINESE
    sent = fake_upstream.requests_to("/v1/chat/completions")
    assert [r.json["model"] for r in sent] == ["coder-model", "coder-model"]
    assert sent[1].json["stream_options"] == {"keep": 1, "include_usage": True}
    headers = sent[0].headers
    assert headers["authorization"] == "Bearer at-0"
    assert headers["user-agent"].startswith("QwenCode/") and headers["x-dashscope-useragent"] == headers["user-agent"]
    assert headers["x-dashscope-cachecontrol"] == "enable" and headers["x-dashscope-authtype"] == "qwen-oauth"


def test_header_values_are_configurable(qwen: QwenService, fake_upstream: FakeUpstream, creds_path: Path,
                                        qwen_config: Callable[..., Path], make_proxy: ProxyMaker) -> None:
    write_creds(creds_path)
    proxy = make_proxy(qwen_config(user_agent="hookproxy/0.1", headers={"X-Extra": "1"}))
    assert chat(proxy).status_code == 200
    headers = fake_upstream.requests_to("/v1/chat/completions")[0].headers
    assert headers["user-agent"] == "hookproxy/0.1" and headers["x-extra"] == "1"


def test_expired_token_with_20_concurrent_requests_refreshes_once(
    qwen: QwenService, creds_path: Path, qwen_config: Callable[..., Path], make_proxy: ProxyMaker
) -> None:
    write_creds(creds_path, expires_in=5)
    qwen.token_stall = 0.1
    proxy = make_proxy(qwen_config())
    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(lambda _: chat(proxy).status_code, range(20)))
    assert statuses == [200] * 20 and qwen.refreshes == 1 and len(qwen.token_requests) == 1
    assert json.loads(creds_path.read_text())["access_token"] == "at-1"


def test_upstream_401_forces_one_refresh_and_one_retry(
    qwen: QwenService, fake_upstream: FakeUpstream, creds_path: Path, qwen_config: Callable[..., Path],
    make_proxy: ProxyMaker,
) -> None:
    write_creds(creds_path, access="revoked-by-server")
    proxy = make_proxy(qwen_config())
    assert chat(proxy).status_code == 200
    assert qwen.refreshes == 1 and len(fake_upstream.requests_to("/v1/chat/completions")) == 2
    # After the cutoff even fresh tokens get 401: one refresh, one retry, then the 401 surfaces.
    qwen.discontinued = True
    fake_upstream.requests.clear()
    response = chat(proxy)
    assert response.status_code == 401 and "invalid access token" in response.json()["error"]["message"]
    assert qwen.refreshes == 2 and len(fake_upstream.requests_to("/v1/chat/completions")) == 2


@pytest.mark.parametrize(("status", "message"), [(403, "forbidden"), (400, "Invalid access token, please log in")])
def test_an_auth_error_by_status_or_message_forces_one_refresh(
    qwen: QwenService, fake_upstream: FakeUpstream, creds_path: Path, qwen_config: Callable[..., Path],
    make_proxy: ProxyMaker, status: int, message: str,
) -> None:
    write_creds(creds_path)
    proxy = make_proxy(qwen_config())
    fake_upstream.queue(Canned(status=status, json={"error": {"message": message, "type": "auth"}}))
    assert chat(proxy).status_code == 200
    assert qwen.refreshes == 1 and len(fake_upstream.requests_to("/v1/chat/completions")) == 2


def test_tool_calls_pass_through(qwen: QwenService, fake_upstream: FakeUpstream, creds_path: Path,
                                 qwen_config: Callable[..., Path], make_proxy: ProxyMaker) -> None:
    write_creds(creds_path)
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    answer = chat_completion("", finish_reason="tool_calls")
    answer["choices"][0]["message"]["tool_calls"] = [call]
    answer["choices"][0]["finish_reason"] = "tool_calls"
    deltas = [chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                     "function": {"name": "f", "arguments": ""}}]}),
              chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a": 1}'}}]}),
              chunk({}, "tool_calls")]
    fake_upstream.queue(Canned(json=answer), Canned(sse=deltas))
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    response = chat(proxy := make_proxy(qwen_config()), tools=tools, tool_choice="auto")
    assert response.json()["choices"][0]["message"]["tool_calls"] == [call]
    streamed = chat(proxy, stream=True, tools=tools)
    events = [json.loads(line[6:]) for line in streamed.text.splitlines() if line.startswith("data: {")]
    assert [e["choices"][0]["delta"] for e in events] == [d["choices"][0]["delta"] for d in deltas]
    assert fake_upstream.requests_to("/v1/chat/completions")[0].json["tools"] == tools


def test_models_and_health_never_show_a_token(qwen: QwenService, creds_path: Path,
                                              qwen_config: Callable[..., Path], make_proxy: ProxyMaker) -> None:
    write_creds(creds_path, access="AT-SECRET-1", refresh="RT-SECRET-1", expires_in=600)
    proxy = make_proxy(qwen_config())
    health = httpx.get(proxy.url + "/health")
    state = health.json()["backends"]["qwen-oauth.test"]
    assert state["usable"] is True and 500 < state["expires_in_seconds"] <= 600
    assert "SECRET" not in health.text
    models = httpx.get(proxy.url + "/v1/models").json()["data"]
    # the instance `qwen-oauth.test` is listed under its shortest alias, `test`
    assert [m["id"] for m in models if m["owned_by"] == "test"] == [
        "test:coder-model", "test:vision-model", "test:qwen3-coder-plus", "test:qwen3-coder-flash"]


def test_malformed_credentials_fail_clearly_and_other_backends_keep_serving(
    qwen: QwenService, fake_upstream: FakeUpstream, creds_path: Path, qwen_config: Callable[..., Path],
    make_proxy: ProxyMaker,
) -> None:
    creds_path.parent.mkdir(parents=True)
    creds_path.write_text('{"access_token": "AT-SECRET", "refresh_token": ')
    before = creds_path.read_bytes()
    other = {"connector": "openai-compatible", "api_url": fake_upstream.url, "api_key": "at-0"}  # the fake accepts at-0
    proxy = make_proxy(qwen_config({"backends": {"other": other}}))
    response = chat(proxy)
    assert response.status_code == 401
    message = response.json()["error"]["message"]
    assert str(creds_path) in message and "Invalid JSON" in message and "SECRET" not in message
    health = httpx.get(proxy.url + "/health").json()["backends"]["qwen-oauth.test"]
    assert health["usable"] is False and str(creds_path) in health["reason"]
    assert chat(proxy, model="other:m").status_code == 200
    assert creds_path.read_bytes() == before


def test_missing_file_is_401_telling_to_run_qwen_auth(qwen: QwenService, creds_path: Path,
                                                      qwen_config: Callable[..., Path],
                                                      make_proxy: ProxyMaker) -> None:
    response = chat(make_proxy(qwen_config()))
    message = response.json()["error"]["message"]
    assert response.status_code == 401 and message.count("qwen auth") == 1
    assert message.endswith("run `qwen auth` to create it")
    assert not creds_path.exists()


def test_an_invalid_field_tells_to_sign_in_again_not_to_create_the_file(
    qwen: QwenService, creds_path: Path, qwen_config: Callable[..., Path], make_proxy: ProxyMaker,
) -> None:
    creds_path.parent.mkdir(parents=True)
    creds_path.write_text('{"access_token": "", "refresh_token": "rt"}')
    message = chat(make_proxy(qwen_config())).json()["error"]["message"]
    assert "Invalid access_token" in message and "to create it" not in message
    assert message.count("qwen auth") == 1 and "sign in again" in message


def test_a_failing_token_endpoint_is_one_attempt_and_one_accurate_log_line(
    qwen: QwenService, fake_upstream: FakeUpstream, creds_path: Path, qwen_config: Callable[..., Path],
    make_proxy: ProxyMaker, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO")
    write_creds(creds_path, expires_in=-5)
    qwen.token_answer = Canned(status=500, json={"error": "down"})
    response = chat(make_proxy(qwen_config()))
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "token_refresh_failed"
    assert "extra.token_url" in response.json()["error"]["message"]
    assert len(qwen.token_requests) == 1  # not retried as if it were a connection error
    assert fake_upstream.requests_to("/v1/chat/completions") == []
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("hookproxy")]
    assert not any("not retried" in line or "failover" in line for line in lines)
    assert [line for line in lines if "could not refresh" in line] == [
        next(line for line in lines if "could not refresh" in line)]
    assert "the chat request was not sent" in next(line for line in lines if "could not refresh" in line)


@pytest.mark.parametrize(("key", "value"), [("nonsense_key", 1), ("models", "coder-model"),
                                            ("enable_qwen_oauth_initial_rate_limit_retry", "maybe"),
                                            ("token_url", "chat.qwen.ai/token")])
def test_bad_extra_is_a_config_error_naming_the_key(key: str, value: Any, qwen_config: Callable[..., Path]) -> None:
    with pytest.raises(ConfigError) as caught:
        build_proxy(qwen_config(**{key: value}), {})
    assert f"extra.{key}" in caught.value.message and "qwen-oauth.test" in caught.value.message


def test_resource_url_gives_the_base_url(
    qwen: QwenService, creds_path: Path, offline_proxy: Callable[..., Any]
) -> None:
    write_creds(creds_path, resource_url="portal.qwen.ai")
    backend = offline_proxy(api_base=None).backends["qwen-oauth.test"]
    assert backend.base_url() == "https://portal.qwen.ai/v1"  # default before the file is read
    backend.tokens.peek()
    assert backend.base_url() == "https://portal.qwen.ai/v1"
    write_creds(creds_path, resource_url="https://x.example/v1/")
    backend.tokens.peek()
    assert backend.base_url() == "https://x.example/v1"


def test_a_closed_gate_does_not_warn_about_missing_credentials(
        qwen_config: Callable[..., Path], caplog: pytest.LogCaptureFixture) -> None:
    path = qwen_config(enable_qwen_oauth_backend_debugging_override=False)
    with caplog.at_level("WARNING"):
        proxy = build_proxy(path, env={})
        state = proxy.backends["qwen-oauth.test"].health()
    assert not state.usable and "gate closed" in (state.reason or "")
    assert caplog.records == []
