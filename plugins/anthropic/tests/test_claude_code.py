"""Claude Code itself (``claude -p``, from npm) through ``python -m hookproxy``.

No login and no network: an empty HOME, ``ANTHROPIC_BASE_URL`` at the proxy, the proxy key as
``ANTHROPIC_API_KEY``, telemetry and updates off, ``--bare`` (a small request with the Bash, Edit
and Read tools) and ``--allowedTools Bash`` (the tool runs without a prompt). CI installs the
client with ``scripts/install-claude-code``; a missing client fails here, it never skips.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hookproxy.testing import Canned, FakeUpstream, RecordedRequest, chunk, run_cli_proxy
from hookproxy_anthropic.testing import FakeAnthropicUpstream, error

pytestmark = pytest.mark.agents

ROOT = Path(__file__).resolve().parents[3]
KEY = "sk-proxy-claude-code"
CHAIN = "cc-chain"
HYBRID = "hybrid:[up:gpt-fake,claude:claude-fake]"


def claude_binary() -> str:
    path = os.environ.get("HOOKPROXY_CLAUDE_BIN") or str(ROOT / ".agents/claude-code/node_modules/.bin/claude")
    if not os.access(path, os.X_OK):
        pytest.fail(f"Claude Code is not installed at {path}: run scripts/install-claude-code (needs npm), "
                    "or set HOOKPROXY_CLAUDE_BIN; deselect these tests with -m 'not agents'")
    return path


@pytest.fixture(scope="module")
def proxy(_fake_upstream_server: FakeUpstream, _claude_server: FakeAnthropicUpstream,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    up = {"connector": "openai-compatible", "api_url": _fake_upstream_server.url, "api_key": "sk-up"}
    claude = {"connector": "anthropic", "api_url": _claude_server.url, "api_key": "sk-claude"}
    config = {"default_backend": "up", "auth": {"api_keys": [KEY]}, "backends": {"up": up, "claude": claude},
              "failover_routes": {CHAIN: {"policy": "ordered", "elements": ["claude:claude-fake", "up:gpt-fake"]}}}
    path = tmp_path_factory.mktemp("claude-code") / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    with run_cli_proxy("--config", str(path), "--min-retry-wait", "0") as (url, _process):
        yield url


def run_claude(url: str, prompt: str, model: str, tmp_path: Path) -> dict[str, Any]:
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "TERM": "dumb", "LANG": "C.UTF-8",
           "ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": KEY, "DISABLE_TELEMETRY": "1",
           "DISABLE_AUTOUPDATER": "1", "DISABLE_ERROR_REPORTING": "1",
           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "CLAUDE_CODE_MAX_RETRIES": "0"}
    command = [claude_binary(), "-p", prompt, "--model", model, "--output-format", "json",
               "--allowedTools", "Bash", "--bare"]
    result = subprocess.run(command, env=env, cwd=home, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            timeout=150)
    assert result.stdout.strip(), f"Claude Code printed nothing (exit {result.returncode}): {result.stderr[-2000:]}"
    outcome: dict[str, Any] = json.loads(result.stdout)
    assert outcome["is_error"] is False, outcome
    return outcome


def bash_then_answer(request: RecordedRequest) -> Canned | None:
    """First turn: call Bash with the command in two argument fragments; then answer with its output."""
    body = request.json
    messages = body.get("messages") or []
    if messages and messages[-1].get("role") == "tool":
        output = messages[-1]["content"].strip()
        return Canned(sse=[chunk({"role": "assistant", "content": ""}), chunk({"content": "The command printed "}),
                           chunk({"content": output + "."}), chunk({}, "stop")])
    if any(tool["function"]["name"] == "Bash" for tool in body.get("tools") or []):
        call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "Bash", "arguments": ""}}
        return Canned(sse=[chunk({"role": "assistant", "content": None, "tool_calls": [call]}),
                           chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"command": "echo hook'}}]}),
                           chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'proxy-$((6*7))"}'}}]}),
                           chunk({}, "tool_calls")])
    return None


def test_claude_code_runs_a_bash_tool_round_trip_through_an_openai_backend(proxy, fake_upstream, tmp_path):
    fake_upstream.handler = bash_then_answer
    outcome = run_claude(proxy, "Print the magic word with Bash.", "hp-test", tmp_path)
    assert outcome["result"] == "The command printed hookproxy-42."
    first, second = fake_upstream.requests_to()
    assert first.json["model"] == "hp-test" and first.json["stream"] is True
    assert first.json["messages"][0]["role"] == "system"
    assert second.json["messages"][-2]["tool_calls"][0]["function"]["arguments"] == \
        '{"command":"echo hookproxy-$((6*7))"}'
    assert second.json["messages"][-1] == {"role": "tool", "tool_call_id": "call_1", "content": "hookproxy-42"}


def test_claude_code_talks_natively_to_an_anthropic_backend(proxy, claude_up, tmp_path):
    outcome = run_claude(proxy, "Say the password.", "claude:claude-fake", tmp_path)
    assert outcome["result"].startswith("echo: ") and outcome["result"].endswith("Say the password.")
    (request,) = claude_up.requests_to()
    assert request.json["model"] == "claude-fake" and request.json["stream"] is True
    assert "claude-code" in request.headers["anthropic-beta"]
    assert any(block.get("cache_control") for block in request.json["system"])  # passed through untouched
    assert request.headers["x-api-key"] == "sk-claude"


def test_claude_code_fails_over_from_an_overloaded_anthropic_backend(proxy, claude_up, fake_upstream, tmp_path):
    claude_up.queue(error(529, "overloaded_error", "Overloaded"))
    outcome = run_claude(proxy, "Echo me.", CHAIN, tmp_path)
    assert outcome["result"].startswith("echo: ") and outcome["result"].endswith("Echo me.")
    assert len(claude_up.requests_to()) == 1 and len(fake_upstream.requests_to()) == 1


def test_claude_code_through_a_hybrid(proxy, fake_upstream, claude_up, tmp_path):
    fake_upstream.queue(Canned(sse=[chunk({"role": "assistant", "content": None, "reasoning_content": "Plan it."}),
                                    chunk({"content": "never read"})]))
    outcome = run_claude(proxy, "Think, then answer.", HYBRID, tmp_path)
    assert outcome["result"].startswith("echo: ")
    assert "Plan it." in json.dumps(claude_up.requests_to()[-1].json)
