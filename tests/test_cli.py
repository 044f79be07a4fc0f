"""The command line as a user meets it: one-line errors with exit status 2, the start-up banner."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import openai
import pytest

from hookproxy.testing import run_cli_proxy, write_config
from tests.conftest import PROXY_KEY, upstream_block

CORE_ONLY = {"HOOKPROXY_DISABLE_PLUGINS": "qwen-oauth,hybrid"}


def hookproxy(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "hookproxy", *args], capture_output=True, text=True, timeout=30,
                          env={**os.environ, **CORE_ONLY, **(env or {})}, cwd=cwd)


def assert_one_line_error(result, *needles):
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("hookproxy: error: ")
    for needle in needles:
        assert needle in lines[0]


def test_a_bad_flag_exits_2_with_one_line():
    assert_one_line_error(hookproxy("--prot", "8000"), "--prot", "--help")


def test_a_bad_flag_value_exits_2_with_one_line():
    assert_one_line_error(hookproxy("--port", "eighty"), "--port")


def test_a_missing_config_file_exits_2_naming_it(tmp_path):
    assert_one_line_error(hookproxy("--config", str(tmp_path / "nope.yaml")), "nope.yaml", "--config")


def test_a_bad_config_exits_2_naming_the_key_and_file(tmp_path):
    path = write_config(tmp_path, {"prot": 1})
    assert_one_line_error(hookproxy("--config", str(path)), "'prot'", str(path))


def test_a_missing_env_var_exits_2_naming_it(tmp_path):
    path = write_config(tmp_path, {"auth": {"api_keys": ["${MY_PROXY_KEY}"]}})
    assert_one_line_error(hookproxy("--config", str(path)), "MY_PROXY_KEY", "export")


def test_an_invalid_env_value_exits_2_naming_the_variable_not_the_file(tmp_path):
    path = write_config(tmp_path, {})
    result = hookproxy("--config", str(path), env={"HOOKPROXY_PORT": "x"})
    assert_one_line_error(result, "environment variable HOOKPROXY_PORT", "'x'")
    assert str(path) not in result.stderr


@pytest.mark.parametrize("extra", [[], ["--disable-auth", "--api-key", "k"]])
def test_a_public_host_without_auth_is_refused(tmp_path, extra):
    path = write_config(tmp_path, {})
    assert_one_line_error(hookproxy("--config", str(path), "--host", "0.0.0.0", *extra), "--api-key", "0.0.0.0")


def test_start_up_prints_the_url_and_backends_and_serves_the_sdk(tmp_path, fake_upstream):
    path = write_config(tmp_path, {"default_backend": "up", "backends": {"up": upstream_block(fake_upstream)}})
    with run_cli_proxy("--config", str(path), "--api-key", PROXY_KEY, env=CORE_ONLY) as (url, process):
        sdk = openai.OpenAI(base_url=url + "/v1", api_key=PROXY_KEY, max_retries=0)
        assert sdk.chat.completions.create(model="m1", messages=[{"role": "user", "content": "hi"}]).choices
        assert httpx.get(url + "/v1/models").status_code == 401
        process.terminate()
        output = process.communicate(timeout=10)[0]
    assert f"hookproxy listening on {url}/v1 (auth on)" in output
    assert "up [openai-compatible]: ready; models: m1, m2" in output
    assert "sk-upstream" not in output and PROXY_KEY not in output


def test_the_shipped_config_starts_and_reports_missing_keys(tmp_path):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {k: v for k, v in os.environ.items() if k not in ("MINIMAX_API_KEY", "DASHSCOPE_API_KEY")}
    result = subprocess.run([sys.executable, "-m", "hookproxy", "plugins"], cwd=repo, env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "minimax (openai-compatible.minimax) [openai-compatible]: not usable: api_key is empty" in result.stdout


def test_hook_tracing_never_prints_a_secret(tmp_path, fake_upstream):
    path = write_config(tmp_path, {"default_backend": "up", "backends": {"up": upstream_block(
        fake_upstream, extra={"headers": {"x-secret": "hdr-secret-456"}})}})
    env = {"HOOKPROXY_TRACE_HOOKS": "1"}
    result = hookproxy("plugins", "--config", str(path), env=env)
    assert "resolve_backend" in result.stderr
    with run_cli_proxy("--config", str(path), env={**CORE_ONLY, **env}) as (url, process):
        httpx.post(url + "/v1/chat/completions", json={"model": "m1", "messages": [{"role": "user", "content": "x"}]})
        process.terminate()
        output = process.communicate(timeout=10)[0]
    assert "prepare_request" in output
    for secret in ("sk-upstream-secret-123", "hdr-secret-456"):
        assert secret not in result.stderr + result.stdout + output
