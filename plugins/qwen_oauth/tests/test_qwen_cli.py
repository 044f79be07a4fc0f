"""The proxy as users start it (`python -m hookproxy ...`): the openai SDK, and two processes."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai

from hookproxy.testing import FakeUpstream, run_cli_proxy
from hookproxy_qwen_oauth.testing import QwenService, write_creds

CHINESE = "你好，世界"


def test_openai_sdk_against_the_cli_started_proxy(qwen: QwenService, fake_upstream: FakeUpstream,
                                                  creds_path: Path, qwen_config: Callable[..., Path]) -> None:
    write_creds(creds_path, expires_in=10)  # inside the 30 s buffer: the first call refreshes
    config = qwen_config(enable_qwen_oauth_backend_debugging_override=False)
    args = ("--config", str(config), "--default-backend", "qwen-oauth",
            "--enable-qwen-oauth-backend-debugging-override")
    with run_cli_proxy(*args) as (url, _process):
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        reply = client.chat.completions.create(model="coder-model", messages=[{"role": "user", "content": CHINESE}])
        assert reply.choices[0].message.content == "echo: " + CHINESE
        stream = client.chat.completions.create(model="qwen3-coder-plus", stream=True,
                                                messages=[{"role": "user", "content": CHINESE}])
        text = "".join(part.choices[0].delta.content or "" for part in stream if part.choices)
        assert text == "echo: " + CHINESE
        health = httpx.get(url + "/health").text
    assert qwen.refreshes == 1 and "at-1" not in health and "rt-1" not in health
    sent = fake_upstream.requests_to("/v1/chat/completions")
    assert [r.headers["authorization"] for r in sent] == ["Bearer at-1", "Bearer at-1"]
    assert sent[1].json["stream_options"]["include_usage"] is True


def test_two_proxy_processes_sharing_one_file_refresh_once(
    qwen: QwenService, creds_path: Path, qwen_config: Callable[..., Path]
) -> None:
    write_creds(creds_path, expires_in=-60, unknown_field="kept")
    qwen.token_stall = 0.3  # widen the window in which both processes want a refresh
    config = str(qwen_config())
    with run_cli_proxy("--config", config) as (first, _a), run_cli_proxy("--config", config) as (second, _b):

        def ask(url: str) -> int:
            body = {"model": "coder-model", "messages": [{"role": "user", "content": "hi"}]}
            return httpx.post(url + "/v1/chat/completions", json=body, timeout=30).status_code

        with ThreadPoolExecutor(10) as pool:
            statuses = list(pool.map(ask, [first, second] * 5))
    assert statuses == [200] * 10
    assert qwen.refreshes == 1 and len(qwen.token_requests) == 1
    saved = json.loads(creds_path.read_text())
    assert saved["refresh_token"] == "rt-1" and saved["unknown_field"] == "kept"
    assert (creds_path.stat().st_mode & 0o777) == 0o600
    assert not (creds_path.parent / "oauth_creds.lock").exists()


def test_hook_tracing_with_every_installed_plugin_never_prints_a_token(
    qwen: QwenService, creds_path: Path, qwen_config: Callable[..., Path]
) -> None:
    """HOOKPROXY_TRACE_HOOKS prints every hook call's arguments; the qwen-oauth token lives in
    ChatCall.state and must not be among them (nor anywhere else in the log)."""
    access, refresh = "qwen-access-secret-0123", "qwen-refresh-secret-4567"
    qwen.access_tokens, qwen.refresh_token = {access}, refresh
    write_creds(creds_path, access=access, refresh=refresh)
    config = qwen_config()
    env = {"HOOKPROXY_TRACE_HOOKS": "1", "HOOKPROXY_DISABLE_PLUGINS": ""}
    with run_cli_proxy("--config", str(config), "--log-level", "DEBUG", env=env) as (url, process):
        for model, stream in (("coder-model", False), ("coder-model", True),
                              ("hybrid:[qwen-oauth:coder-model,qwen-oauth:coder-model]", True)):
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
            assert httpx.post(url + "/v1/chat/completions", json=body, timeout=30).status_code == 200
        process.terminate()
        output = process.communicate(timeout=10)[0]
    assert "prepare_request" in output and "hybrid" in output  # the trace ran, through both plugins
    assert access not in output and refresh not in output


def test_two_instances_on_one_credentials_file_are_refused_at_start(
    fake_upstream: FakeUpstream, creds_path: Path, write_config: Callable[..., Path], tmp_path: Path,
) -> None:
    import subprocess
    import sys

    from .conftest import instance

    same = str(creds_path.parent / ".." / creds_path.parent.name / creds_path.name)  # another spelling
    config = write_config({}, {"qwen-oauth.work": instance(fake_upstream, creds_path),
                               "qwen-oauth.home": instance(fake_upstream, Path(same))})
    result = subprocess.run([sys.executable, "-m", "hookproxy", "--config", str(config)], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "'qwen-oauth.home'" in line and "'qwen-oauth.work'" in line and "credentials_path" in line
