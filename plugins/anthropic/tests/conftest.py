"""Fixtures: a fake OpenAI-compatible upstream (``up``), a fake Anthropic upstream (``claude``)
and a proxy with this plugin and the core's built-ins only."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import anthropic
import pluggy
import pytest
import yaml

import hookproxy.openai_chat
import hookproxy.openai_compatible
import hookproxy_anthropic
from hookproxy.plugins import make_plugin_manager
from hookproxy.testing import FakeUpstream, RunningProxy, run_cli_proxy
from hookproxy_anthropic.testing import FakeAnthropicUpstream

pytest_plugins = ["hookproxy.testing"]

KEY = "sk-proxy-anthropic"
UPSTREAM_KEY = "sk-upstream-secret-456"
USER = [{"role": "user", "content": "Hello there"}]


def anthropic_pm(*extra: tuple[str, object]) -> pluggy.PluginManager:
    builtin = [("openai-compatible", hookproxy.openai_compatible), ("openai-chat", hookproxy.openai_chat),
               ("anthropic", hookproxy_anthropic)]
    return make_plugin_manager(load_entrypoints=False, extra=[*builtin, *extra])


def backends(openai_up: FakeUpstream, claude_up: FakeAnthropicUpstream) -> dict[str, Any]:
    return {
        "up": {"connector": "openai-compatible", "api_url": openai_up.url, "api_key": UPSTREAM_KEY,
               "models": ["gpt-fake"]},
        "claude": {"connector": "anthropic", "api_url": claude_up.url, "api_key": UPSTREAM_KEY,
                   "models": ["claude-fake"]},
    }


def config(openai_up: FakeUpstream, claude_up: FakeAnthropicUpstream, **overrides: Any) -> dict[str, Any]:
    # Tests here replay rate limits against one backend in turn (and share a proxy per module):
    # each must reach the upstream, so the proxy does not keep a learned Retry-After cooldown.
    return {"default_backend": "up", "auth": {"api_keys": [KEY]}, "backends": backends(openai_up, claude_up),
            "failure_handling": {"learn_cooldowns": False}, **overrides}


@pytest.fixture(scope="session")
def _claude_server() -> Iterator[FakeAnthropicUpstream]:
    server = FakeAnthropicUpstream().start()
    yield server
    server.stop()


@pytest.fixture
def claude_up(_claude_server: FakeAnthropicUpstream) -> Iterator[FakeAnthropicUpstream]:
    """The fake Anthropic upstream, reset for this test."""
    _claude_server.reset()
    yield _claude_server
    _claude_server.reset()


@pytest.fixture(scope="module")
def cli_proxy(_fake_upstream_server: FakeUpstream, _claude_server: FakeAnthropicUpstream,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m hookproxy`` over both fakes, once per module (the fakes are reset per test);
    every installed plugin is loaded, and retries do not wait."""
    path = tmp_path_factory.mktemp("cli") / "config.yaml"
    path.write_text(yaml.safe_dump(config(_fake_upstream_server, _claude_server)), encoding="utf-8")
    with run_cli_proxy("--config", str(path), "--min-retry-wait", "0") as (url, _process):
        yield url


@pytest.fixture
def start(fake_upstream: FakeUpstream, claude_up: FakeAnthropicUpstream, write_config: Callable[..., Path],
          make_proxy: Callable[..., RunningProxy]) -> Callable[..., RunningProxy]:
    """``start(cli={...}, plugins=(...), **config_overrides)``: a proxy over both fakes (auth key KEY)."""

    def make(cli: dict[str, Any] | None = None, plugins: tuple[tuple[str, object], ...] = (),
             **overrides: Any) -> RunningProxy:
        path = write_config(config(fake_upstream, claude_up, **overrides))
        return make_proxy(path, cli or {}, pm=anthropic_pm(*plugins))

    return make


def sdk(running: RunningProxy, **kwargs: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=running.url, api_key=KEY, max_retries=0, **kwargs)


@pytest.fixture
def kit() -> ModuleType:
    """This module's helpers and constants (test files cannot import a conftest by name)."""
    return sys.modules[__name__]
