"""The real Codex CLI (npm ``@openai/codex``) through hookproxy to an OpenAI-compatible fake.

``codex exec`` runs one-shot with a custom model provider whose ``wire_api`` is ``responses``,
no login and no network: an empty ``CODEX_HOME`` with a config.toml, and ``env -i``. The fake
upstream plays the model: it answers a prompt, asks for a shell command or a patch, and
answers once the tool output comes back in the next request. The binary comes from
``scripts/install-codex`` (``.agents/codex``) or ``$HOOKPROXY_CODEX_BIN``; a missing client
fails here, it never skips.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from hookproxy.testing import Canned, FakeUpstream, RecordedRequest, chunk, content_stream

pytestmark = pytest.mark.agents

ROOT = Path(__file__).resolve().parents[3]
KEY = "sk-proxy-responses"
PATCH = "*** Begin Patch\n*** Add File: greeting.txt\n+hello from a patch\n*** End Patch\n"

CONFIG = """\
model = "{model}"
model_provider = "hp"
approval_policy = "never"
sandbox_mode = "danger-full-access"
check_for_update_on_startup = false
[analytics]
enabled = false
[feedback]
enabled = false
[otel]
exporter = "none"
trace_exporter = "none"
metrics_exporter = "none"
[features]
plugins = false
[model_providers.hp]
name = "hookproxy"
base_url = "{url}/v1"
env_key = "HP_KEY"
wire_api = "responses"
"""


def codex_binary() -> Path:
    configured = os.environ.get("HOOKPROXY_CODEX_BIN")
    path = Path(configured) if configured else ROOT / ".agents" / "codex" / "node_modules" / ".bin" / "codex"
    if not path.exists():
        pytest.fail(f"the Codex CLI is not installed at {path}: run scripts/install-codex (needs npm; "
                    "scripts/test does) or set HOOKPROXY_CODEX_BIN")
    return path


def run_codex(url: str, home: Path, workdir: Path, prompt: str,
              model: str = "fake-model") -> subprocess.CompletedProcess[str]:
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(CONFIG.format(model=model, url=url), encoding="utf-8")
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "CODEX_HOME": str(codex_home),
           "HP_KEY": KEY, "TERM": "dumb", "LANG": "C.UTF-8"}
    return subprocess.run([str(codex_binary()), "exec", "--skip-git-repo-check", "--ephemeral", prompt],
                          cwd=workdir, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=150)


def last_message(request: RecordedRequest) -> dict[str, Any]:
    message: dict[str, Any] = request.json["messages"][-1]
    return message


@pytest.fixture
def codex(fake_upstream: FakeUpstream, cli_proxy: Any, tmp_path: Path, kit: Any) -> Any:
    """``codex(prompt, model=..., config=...)``: run codex exec through a CLI-started hookproxy
    (by default its backend ``up`` is the fake upstream); the result and the work folder."""
    default = {"default_backend": "up", "backends": {"up": kit.backend(fake_upstream)}}
    workdir = tmp_path / "work"
    workdir.mkdir()

    def run(prompt: str, model: str = "fake-model",
            config: dict[str, Any] | None = None) -> tuple[subprocess.CompletedProcess[str], Path]:
        with cli_proxy(config or default) as (url, _process):
            result = run_codex(url, tmp_path / "home", workdir, prompt, model)
        assert result.returncode == 0, f"codex failed:\nSTDOUT:\n{result.stdout}\nSTDERR:\n{result.stderr[-4000:]}"
        return result, workdir

    return run


def test_codex_answers_a_prompt(codex, fake_upstream):
    fake_upstream.queue(Canned(sse=content_stream(["Hello ", "from ", "the fake model."])))
    result, _ = codex("Say hello")
    assert result.stdout.strip().endswith("Hello from the fake model.")
    sent = fake_upstream.requests_to()[0].json
    assert sent["messages"][0]["role"] == "system"  # codex's developer message
    assert sent["messages"][-1]["role"] == "user" and "Say hello" in str(sent["messages"][-1]["content"])
    assert "client_metadata" not in sent and "store" not in sent and "include" not in sent
    assert all(tool["type"] == "function" for tool in sent["tools"])  # web_search dropped


def test_codex_runs_a_shell_command_and_reads_its_output(codex, fake_upstream, kit):
    def model(request: RecordedRequest) -> Canned:
        last = last_message(request)
        if last["role"] == "tool":
            return Canned(sse=content_stream([f"The command printed: {last['content'].strip().splitlines()[-1]}"]))
        plan = chunk({"role": "assistant", "content": None, "reasoning_content": "I should run echo."})
        call = kit.tool_call_stream(("call_shell", "exec_command", ['{"cmd": "echo hookproxy-', '$((6*7))"}']))
        return Canned(sse=[plan, *(call.sse or [])])

    fake_upstream.handler = model
    result, _ = codex("Run the command")
    requests = fake_upstream.requests_to()
    assert len(requests) == 2
    echoed = requests[1].json["messages"]
    calls = [message for message in echoed if message.get("tool_calls")]
    assert calls[-1]["tool_calls"][0]["function"]["name"] == "exec_command"
    output = echoed[echoed.index(calls[-1]) + 1]
    assert output["role"] == "tool" and output["tool_call_id"] == "call_shell" and isinstance(output["content"], str)
    assert "hookproxy-42" in output["content"]
    assert calls[-1]["reasoning_content"] == "I should run echo."  # codex echoed the reasoning item back
    assert "hookproxy-42" in result.stdout


def patch_then_answer(kit: Any) -> Any:
    """The fake model: apply PATCH, then say "Patched." once the tool output is back."""
    import json

    def model(request: RecordedRequest) -> Canned:
        if last_message(request)["role"] == "tool":
            return Canned(sse=content_stream(["Patched."]))
        arguments = json.dumps({"input": PATCH})
        return kit.tool_call_stream(("call_patch", "apply_patch", [arguments[:20], arguments[20:]]))

    return model


def test_codex_patches_through_a_failover_route_whose_first_backend_is_down(codex, fake_upstream, make_fake_upstream,
                                                                            kit):
    down = make_fake_upstream()
    down.handler = lambda request: Canned(status=500, json={"error": {"message": "down", "type": "server_error"}})
    fake_upstream.handler = patch_then_answer(kit)
    config = {"backends": {"down": kit.backend(down), "up": kit.backend(fake_upstream)},
              "failover_routes": {"gpt-5.5": {"policy": "ordered", "elements": ["down:big", "up:small"]}}}
    result, workdir = codex("Create greeting.txt", model="gpt-5.5", config=config)
    assert (workdir / "greeting.txt").read_text() == "hello from a patch\n"
    assert result.stdout.strip().endswith("Patched.")
    assert [request.json["model"] for request in fake_upstream.requests_to()] == ["small", "small"]
    assert down.requests_to() and all(request.json["model"] == "big" for request in down.requests_to())


def test_codex_runs_a_command_through_the_hybrid(codex, fake_upstream, make_fake_upstream, kit):
    thinker = make_fake_upstream()
    thinker.handler = lambda request: Canned(sse=[
        chunk({"role": "assistant", "content": None, "reasoning_content": "Use echo."}),
        chunk({"content": "ignored"}), chunk({}, "stop")])

    def doer(request: RecordedRequest) -> Canned:
        last = last_message(request)
        if last["role"] == "tool":
            return Canned(sse=content_stream([f"Printed {last['content'].strip().splitlines()[-1]}"]))
        return kit.tool_call_stream(("call_h", "exec_command", ['{"cmd": "echo hybrid-ok"}']))

    fake_upstream.handler = doer
    config = {"backends": {"thinker": kit.backend(thinker), "up": kit.backend(fake_upstream)}}
    result, _ = codex("Run it", model="hybrid:[thinker:r1,up:coder]", config=config)
    assert result.stdout.strip().endswith("Printed hybrid-ok")
    assert len(fake_upstream.requests_to()) == 2 and thinker.requests_to()
    assert "Use echo." in str(fake_upstream.requests_to()[0].json["messages"])  # the reasoning reached the doer


def test_codex_retries_a_stream_that_failed_midway(codex, fake_upstream):
    fake_upstream.queue(Canned(sse=[chunk({"role": "assistant", "content": "Half an ans"})], done=False,
                               reset_after=1),
                        Canned(sse=content_stream(["Recovered."])))
    result, _ = codex("Say something")
    assert len(fake_upstream.requests_to()) == 2  # response.failed (server_error) made codex try again
    assert result.stdout.strip().endswith("Recovered.")


def test_codex_applies_a_freeform_patch(codex, fake_upstream, kit):
    import json

    fake_upstream.handler = patch_then_answer(kit)
    result, workdir = codex("Create greeting.txt", model="gpt-5.5")  # a model codex gives the freeform tool
    first = fake_upstream.requests_to()[0].json
    patch_tool = next(tool["function"] for tool in first["tools"] if tool["function"]["name"] == "apply_patch")
    assert list(patch_tool["parameters"]["properties"]) == ["input"]
    assert (workdir / "greeting.txt").read_text() == "hello from a patch\n"
    second = fake_upstream.requests_to()[1].json["messages"]
    call = next(message for message in second if message.get("tool_calls"))
    assert json.loads(call["tool_calls"][0]["function"]["arguments"]) == {"input": PATCH}
    assert second[second.index(call) + 1]["tool_call_id"] == "call_patch"
    assert result.stdout.strip().endswith("Patched.")
