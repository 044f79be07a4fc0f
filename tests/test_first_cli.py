"""The command line in a newcomer's first hour: check, init, demo, --version, a busy port, no config."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import openai

import hookproxy
from hookproxy.testing import run_cli_proxy, write_config
from tests.conftest import upstream_block
from tests.test_cli import CORE_ONLY, assert_one_line_error
from tests.test_cli import hookproxy as run_hookproxy

REPO = Path(__file__).resolve().parents[1]


def all_plugins(*args, cwd=None, env=None):
    """The command with every installed plugin, as a user has it."""
    return subprocess.run([sys.executable, "-m", "hookproxy", *args], capture_output=True, text=True, timeout=30,
                          cwd=cwd, env={**os.environ, **(env or {})})


def test_version():
    result = all_plugins("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"hookproxy {hookproxy.__version__}"


def test_plugins_help_is_its_own():
    result = all_plugins("plugins", "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: hookproxy plugins") and "List the installed plugins" in result.stdout


def test_plugins_piped_into_head_ends_quietly():
    shell = f"{sys.executable} -m hookproxy plugins | head -1"
    result = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True, text=True, timeout=30,
                            cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "" and len(result.stdout.splitlines()) == 1


def test_a_busy_port_is_one_line_and_exit_2(tmp_path):
    path = write_config(tmp_path, {})
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_hookproxy("--config", str(path), "--port", str(port))
    assert_one_line_error(result, f"127.0.0.1:{port}", "--port")
    assert result.stdout == ""  # no banner for a proxy that never listened


def test_an_unknown_connector_stops_the_start(tmp_path):
    path = write_config(tmp_path, {"backends": {"x": {"connector": "opanai-compatible", "api_url": "http://a/v1"}}})
    result = run_hookproxy("--config", str(path))
    assert_one_line_error(result, "'opanai-compatible'", "use one of: ", "demo, openai-compatible")
    assert "openai-chat" not in result.stderr  # a front end, not a connector


def test_outside_the_repo_without_config_it_says_where_it_looked(tmp_path):
    result = all_plugins("check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"config: none found (looked for {Path('config') / 'config.yaml'} in {tmp_path})" in result.stdout
    assert "hookproxy init" in result.stdout


def test_the_banner_lists_configured_backends_and_defaults_only_when_usable(tmp_path, fake_upstream):
    path = write_config(tmp_path, {"backends": {"up": upstream_block(fake_upstream)}})
    with run_cli_proxy("--config", str(path)) as (url, process):
        sdk = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
        assert sdk.chat.completions.create(model="m1", messages=[{"role": "user", "content": "hi"}]).choices
        process.terminate()
        output = process.communicate(timeout=10)[0]
    assert "up [openai-compatible]: ready" in output
    assert "qwen-oauth" not in output  # installed, not configured, not usable: not in the banner, no warning
    assert "WARNING" not in output


def test_check_prints_what_would_be_served_and_does_not_listen(tmp_path):
    path = write_config(tmp_path, {"default_backend": "keyless", "backends": {
        "keyless": {"connector": "openai-compatible", "api_url": "http://127.0.0.1:9/v1", "api_key": "${NO_KEY_X:-}"},
    }})
    result = run_hookproxy("check", "--config", str(path), "--port", "1")
    assert result.returncode == 0, result.stderr
    assert "would listen on http://127.0.0.1:1/v1 (auth off)" in result.stdout
    assert "keyless [openai-compatible]: not usable: api_key is empty" in result.stdout
    assert "set NO_KEY_X" in result.stdout
    assert "configuration OK; not usable yet: keyless" in result.stdout


def test_check_fails_like_the_start_would(tmp_path):
    path = write_config(tmp_path, {"failover_routes": {"r": {"elements": ["ghost:m"]}}})
    assert_one_line_error(run_hookproxy("check", "--config", str(path)), "failover_routes.r", "'ghost'")
    empty = write_config(tmp_path / "empty", {})
    assert_one_line_error(run_hookproxy("check", "--config", str(empty), "--host", "0.0.0.0"), "--api-key")


def test_init_writes_the_shipped_config_and_it_checks(tmp_path):
    result = all_plugins("init", str(tmp_path / "conf"))
    assert result.returncode == 0, result.stderr
    written = sorted(p.relative_to(tmp_path / "conf") for p in (tmp_path / "conf").rglob("*.yaml"))
    shipped = sorted(p.relative_to(REPO / "config") for p in (REPO / "config").rglob("*.yaml"))
    assert written == shipped
    for name in written:  # the starter in the package is the repo's config/, byte for byte
        assert (tmp_path / "conf" / name).read_bytes() == (REPO / "config" / name).read_bytes()
    check = all_plugins("check", "--config", str(tmp_path / "conf" / "config.yaml"))
    assert check.returncode == 0 and "configuration OK" in check.stdout
    assert_one_line_error(run_hookproxy("init", str(tmp_path / "conf")), "config.yaml exists", "--force")


def test_init_writes_instance_files_only_for_installed_connectors(tmp_path):
    result = run_hookproxy("init", str(tmp_path))  # qwen-oauth and hybrid disabled
    assert result.returncode == 0, result.stderr
    names = {p.name for p in (tmp_path / "backends" / "backend-instances").iterdir()}
    assert names == {"openai-compatible.minimax.yaml", "openai-compatible.dashscope.yaml"}
    assert run_hookproxy("check", "--config", str(tmp_path / "config.yaml")).returncode == 0


def test_demo_streams_an_answer_without_any_model(tmp_path):
    with run_cli_proxy("demo", env=CORE_ONLY, cwd=tmp_path) as (url, process):
        sdk = openai.OpenAI(base_url=url + "/v1", api_key="anything", max_retries=0)
        stream = sdk.chat.completions.create(model="any-model", stream=True,
                                             messages=[{"role": "user", "content": "Hello!"}])
        pieces = [chunk.choices[0].delta.content for chunk in stream
                  if chunk.choices and chunk.choices[0].delta.content]
        process.terminate()
        output = process.communicate(timeout=10)[0]
    assert len(pieces) > 5
    assert "You said: 'Hello!'" in "".join(pieces)
    assert "demo [demo]: ready" in output


def test_the_log_level_flag_takes_any_case(tmp_path):
    path = write_config(tmp_path, {})
    assert run_hookproxy("check", "--config", str(path), "--log-level", "debug").returncode == 0
    assert_one_line_error(run_hookproxy("check", "--config", str(path), "--log-level", "loud"), "--log-level")
