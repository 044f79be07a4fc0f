"""Fixtures: three fake upstreams (two reasoning models, one execution model) and a proxy.

``minimax`` streams ``<think>...</think>`` in ``content`` and then keeps talking slowly, so a
test can see that the hybrid hung up on it; ``deepseek`` streams ``reasoning_content`` deltas
and then an answer; ``qwen-oauth`` is an openai-compatible block standing in for the real
qwen-oauth service (exact backend ids beat the qwen-oauth plugin's connector alias).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import orjson
import pluggy
import pytest

import hookproxy.openai_chat
import hookproxy.openai_compatible
import hookproxy_hybrid
from hookproxy.plugins import make_plugin_manager
from hookproxy.testing import (
    Canned,
    FakeUpstream,
    RunningProxy,
    StreamRecord,
    chat_completion,  # noqa: F401 - offered to tests through the kit fixture
    chunk,
    content_stream,
)

pytest_plugins = ["hookproxy.testing"]

SEED_SPEC = "hybrid:[minimax:MiniMax-M2,qwen-oauth:qwen3-coder-plus]"
DEEPSEEK_SPEC = "hybrid:[deepseek:deepseek-reasoner,qwen-oauth:qwen3-coder-plus]"
USER = [{"role": "user", "content": "Write a loop"}]
#: What minimax thinks; the answer text after </think> and the slow tail must never be read.
THINK_PIECES = ["<thi", "nk>Plan: ", "use a ", "loop.</th", "ink>The answer is"]
TAIL = [" more"] * 30
ANSWER_PIECES = ["<thi", "nk>secret</thi", "nk>Hello", " world"]


def hybrid_pm() -> pluggy.PluginManager:
    """Only the built-in connector and this plugin: the tests do not depend on other plugins."""
    return make_plugin_manager(
        load_entrypoints=False,
        extra=[("openai-compatible", hookproxy.openai_compatible),
        ("openai-chat", hookproxy.openai_chat), ("hybrid", hookproxy_hybrid)],
    )


def minimax_stream(pieces: list[str] | None = None, delay: float = 0.05) -> Canned:
    return Canned(sse=content_stream([*(pieces or THINK_PIECES), *TAIL], model="MiniMax-M2"), delay=delay)


def deepseek_stream() -> Canned:
    events = [chunk({"role": "assistant", "content": None, "reasoning_content": ""})]
    events += [chunk({"reasoning_content": piece}) for piece in ["Think ", "in ", "steps."]]
    events += [chunk({"content": piece}) for piece in ["Final", " answer", *TAIL]]
    return Canned(sse=events, delay=0.05)


def answer_stream(pieces: list[str] | None = None) -> Canned:
    return Canned(sse=content_stream(pieces or ANSWER_PIECES, model="qwen3-coder-plus"))


@dataclass
class Fakes:
    minimax: FakeUpstream
    deepseek: FakeUpstream
    qwen: FakeUpstream

    def config(self, **settings: Any) -> dict[str, Any]:
        def block(upstream: FakeUpstream) -> dict[str, Any]:
            return {"connector": "openai-compatible", "api_url": upstream.url, "api_key": "sk-up"}

        backends = {"minimax": block(self.minimax), "deepseek": block(self.deepseek),
                    "qwen-oauth": block(self.qwen), **settings}
        return {"backends": backends}


@pytest.fixture(scope="session")
def _fake_servers() -> Iterator[Fakes]:
    servers = Fakes(FakeUpstream().start(), FakeUpstream().start(), FakeUpstream().start())
    yield servers
    for server in (servers.minimax, servers.deepseek, servers.qwen):
        server.stop()


@pytest.fixture
def fakes(_fake_servers: Fakes) -> Iterator[Fakes]:
    """The three fakes, reset for this test (started once per session: each start costs ~0.2 s)."""
    for server in (_fake_servers.minimax, _fake_servers.deepseek, _fake_servers.qwen):
        server.reset()
    yield _fake_servers


@pytest.fixture
def start(fakes: Fakes, write_config: Callable[..., Path],
          make_proxy: Callable[..., RunningProxy]) -> Callable[..., RunningProxy]:
    """``start(cli={...}, **yaml_settings)``: a proxy with the three fakes configured."""

    def make(cli: dict[str, Any] | None = None, **settings: Any) -> RunningProxy:
        return make_proxy(write_config(fakes.config(**settings)), cli or {}, pm=hybrid_pm())

    return make


@dataclass
class StreamResult:
    status: int
    headers: httpx.Headers
    events: list[dict[str, Any]]
    comments: list[str]
    done: bool

    @property
    def reasoning(self) -> str:
        return "".join(e["choices"][0]["delta"].get("reasoning_content") or ""
                       for e in self.events if e.get("choices"))

    @property
    def content(self) -> str:
        return "".join(e["choices"][0]["delta"].get("content") or "" for e in self.events if e.get("choices"))


def post_stream(running: RunningProxy, model: str, messages: list[Any] | None = None,
                **fields: Any) -> StreamResult:
    body = {"model": model, "messages": messages or USER, "stream": True, **fields}
    events: list[dict[str, Any]] = []
    comments: list[str] = []
    done = False
    with running.client() as client, client.stream("POST", "/v1/chat/completions", json=body) as response:
        for line in response.iter_lines():
            if line.startswith(":"):
                comments.append(line[1:].strip())
            elif line == "data: [DONE]":
                done = True
            elif line.startswith("data: "):
                events.append(orjson.loads(line[6:]))
        return StreamResult(response.status_code, response.headers, events, comments, done)


def post(running: RunningProxy, model: str, messages: list[Any] | None = None, **fields: Any) -> httpx.Response:
    with running.client() as client:
        return client.post("/v1/chat/completions", json={"model": model, "messages": messages or USER, **fields})


def wait_closed(upstream: FakeUpstream, timeout: float = 5.0) -> StreamRecord:
    """Poll (bounded) until the fake saw its streaming client hang up; the fake notices between events."""
    deadline = time.monotonic() + timeout
    while not (upstream.stream_log and upstream.stream_log[-1].client_closed):
        assert time.monotonic() < deadline, f"upstream stream was never closed: {upstream.stream_log}"
        time.sleep(0.02)
    return upstream.stream_log[-1]


@pytest.fixture
def kit() -> ModuleType:
    """This module's helpers and constants (test files cannot import a conftest by name)."""
    return sys.modules[__name__]
