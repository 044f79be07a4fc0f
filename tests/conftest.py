"""Core tests run against the core alone: installed plugins (qwen-oauth, hybrid, ...) are not
loaded unless a test asks for them, as llm and datasette do for their own suites."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pluggy
import pytest

import hookproxy.openai_chat
import hookproxy.openai_compatible
from hookproxy.plugins import make_plugin_manager
from hookproxy.testing import FakeUpstream, RunningProxy

pytest_plugins = ["hookproxy.testing"]

PROXY_KEY = "sk-proxy-test"
UPSTREAM_KEY = "sk-upstream-secret-123"


def core_pm(*extra: tuple[str, object]) -> pluggy.PluginManager:
    """A plugin manager with only the built-in connector and front end (plus test plugins)."""
    builtin = [("openai-compatible", hookproxy.openai_compatible), ("openai-chat", hookproxy.openai_chat)]
    return make_plugin_manager(load_entrypoints=False, extra=[*builtin, *extra])


def upstream_block(upstream: FakeUpstream, **overrides: Any) -> dict[str, Any]:
    return {"connector": "openai-compatible", "api_url": upstream.url, "api_key": UPSTREAM_KEY,
            "models": ["m1", "m2"], **overrides}


@pytest.fixture
def proxy_for(fake_upstream: FakeUpstream, write_config: Callable[..., Path],
              make_proxy: Callable[..., RunningProxy]) -> Callable[..., RunningProxy]:
    """``proxy_for(config_overrides, cli=..., plugins=...)``: a core-only proxy whose default
    backend ``up`` is the fake upstream, with auth on (key PROXY_KEY)."""

    def make(overrides: dict[str, Any] | None = None, *, cli: dict[str, Any] | None = None,
             plugins: tuple[tuple[str, object], ...] = (), instances: dict[str, Any] | None = None) -> RunningProxy:
        config: dict[str, Any] = {"default_backend": "up", "auth": {"api_keys": [PROXY_KEY]},
                                  "backends": {"up": upstream_block(fake_upstream)}}
        config.update(overrides or {})
        path = write_config(config, instances)
        return make_proxy(path, cli or {}, pm=core_pm(*plugins))

    return make
