"""The original proxy's hybrid variables, flags and YAML keys, through ``python -m hookproxy``."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest
import yaml

from hookproxy.testing import run_cli_proxy


def hookproxy(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hookproxy", *args], capture_output=True, text=True, timeout=30,
                          env={**os.environ, **(env or {})})


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result
    (line,) = result.stderr.strip().splitlines()
    return line


@pytest.fixture
def config_path(fakes, tmp_path):
    def write(**top: object) -> str:
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump({**fakes.config(), **top}), encoding="utf-8")
        return str(path)

    return write


def test_disable_hybrid_backend_from_the_original_variable(config_path, kit, tmp_path):
    log_file = tmp_path / "proxy.log"
    env = {"DISABLE_HYBRID_BACKEND": "yes", "LOG_FILE": str(log_file)}
    with run_cli_proxy("--config", config_path(), env=env) as (url, _process):
        response = httpx.post(url + "/v1/chat/completions", json={"model": kit.SEED_SPEC, "messages": kit.USER})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "hybrid_backend_disabled"
    assert "DISABLE_HYBRID_BACKEND as HOOKPROXY_DISABLE_HYBRID_BACKEND" in log_file.read_text(encoding="utf-8")


def test_the_hybrid_family_of_variables_reaches_the_hybrid(config_path, fakes, kit):
    env = {"REASONING_INJECTION_PROBABILITY": "0", "HYBRID_BACKEND_REPEAT_MESSAGES": "true"}
    with run_cli_proxy("--config", config_path(), env=env) as (url, _process):
        response = httpx.post(url + "/v1/chat/completions", json={"model": kit.SEED_SPEC, "messages": kit.USER})
    assert response.status_code == 200
    assert response.headers["x-hookproxy-hybrid"] == "reasoning=skipped; reason=probability"
    assert not fakes.minimax.requests_to()


def test_a_bad_original_variable_is_named_in_the_error(config_path):
    line = one_line_error(hookproxy("--config", config_path(), env={"HYBRID_REASONING_MODEL_TIMEOUT": "0"}))
    assert "HYBRID_REASONING_MODEL_TIMEOUT" in line and "HOOKPROXY_" not in line


def test_a_bad_hybrid_flag_is_blamed_on_the_flag_not_the_config_file(config_path):
    path = config_path()
    line = one_line_error(hookproxy("--config", path, "--reasoning-injection-probability", "2"))
    assert line.startswith("hookproxy: error: --reasoning-injection-probability: ")
    assert path not in line


def test_a_bad_hybrid_yaml_key_is_blamed_on_the_file_and_key(config_path, fakes):
    path = config_path(backends={**fakes.config()["backends"], "hybrid_reasoning_backoff_turns": -1})
    line = one_line_error(hookproxy("--config", path))
    assert f"{path}: backends.hybrid_reasoning_backoff_turns" in line


def test_a_hybrid_setting_at_the_top_level_says_where_it_lives_now(config_path):
    path = config_path(disable_hybrid_backend=True)
    line = one_line_error(hookproxy("--config", path))
    assert "'disable_hybrid_backend'" in line and "backends.disable_hybrid_backend" in line
