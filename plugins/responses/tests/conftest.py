"""Fixtures: a fake OpenAI-compatible upstream and hookproxy started by its CLI in front of it."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from types import ModuleType
from typing import Any

import openai
import pytest
import yaml

from hookproxy.testing import Canned, FakeUpstream, chunk, run_cli_proxy

pytest_plugins = ["hookproxy.testing"]

PROXY_KEY = "sk-proxy-responses"


def tool_call_stream(*calls: tuple[str, str, list[str]], text: str | None = None) -> Canned:
    """A chat stream that makes tool calls ``(call_id, name, argument fragments)``, then stops."""
    events = [chunk({"role": "assistant", "content": None})]
    if text:
        events.append(chunk({"content": text}))
    for index, (call_id, name, fragments) in enumerate(calls):
        events.append(chunk({"tool_calls": [{"index": index, "id": call_id, "type": "function",
                                             "function": {"name": name, "arguments": ""}}]}))
        events += [chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}) for piece in fragments]
    events.append(chunk({}, "tool_calls"))
    events.append(usage_chunk(12, 7, cached=4, reasoning=2))
    return Canned(sse=events)


def usage_chunk(prompt: int, completion: int, *, cached: int = 0, reasoning: int = 0) -> dict[str, Any]:
    return {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": "fake-model",
            "choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                                     "total_tokens": prompt + completion,
                                     "prompt_tokens_details": {"cached_tokens": cached},
                                     "completion_tokens_details": {"reasoning_tokens": reasoning}}}


def start_cli_proxy(folder: Path, config: dict[str, Any], *flags: str) -> AbstractContextManager[tuple[str, Any]]:
    """hookproxy from its CLI with this YAML (auth on, key PROXY_KEY); yields (url, process)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump({"auth": {"api_keys": [PROXY_KEY]}, **config}), encoding="utf-8")
    return run_cli_proxy("--config", str(path), *flags)


@pytest.fixture
def cli_proxy(tmp_path: Path) -> Callable[..., AbstractContextManager[tuple[str, Any]]]:
    """``cli_proxy(config, *flags)``: see :func:`start_cli_proxy`."""

    def start(config: dict[str, Any], *flags: str) -> AbstractContextManager[tuple[str, Any]]:
        return start_cli_proxy(tmp_path / "proxy", config, *flags)

    return start


def backend(upstream: FakeUpstream, **extra: Any) -> dict[str, Any]:
    return {"connector": "openai-compatible", "api_url": upstream.url, "api_key": "sk-upstream", **extra}


@pytest.fixture(scope="module")
def proxy_url(_fake_upstream_server: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """hookproxy (CLI) whose default backend ``up`` is the session's fake upstream (use the
    ``fake_upstream`` fixture in a test to reset and script it); one process per test module."""
    # Tests replay rate limits against `up` in turn through this one proxy: each must reach the
    # upstream, so the proxy keeps no learned Retry-After cooldown.
    config = {"default_backend": "up", "backends": {"up": backend(_fake_upstream_server)},
              "failure_handling": {"learn_cooldowns": False}}
    with start_cli_proxy(tmp_path_factory.mktemp("proxy"), config) as (url, _process):
        yield url


@pytest.fixture
def sdk(proxy_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy_url + "/v1", api_key=PROXY_KEY, max_retries=0)


@pytest.fixture
def kit() -> ModuleType:
    """This module's helpers (test files cannot import a conftest by name)."""
    return sys.modules[__name__]
