"""Fixtures: the fake Qwen service on the session fake upstream, and config helpers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hookproxy.factory import build_proxy
from hookproxy.proxy import Proxy
from hookproxy.testing import FakeUpstream
from hookproxy_qwen_oauth.testing import TOKEN_PATH, QwenService

pytest_plugins = ["hookproxy.testing"]


@pytest.fixture
def qwen(fake_upstream: FakeUpstream) -> Iterator[QwenService]:
    """The fake Qwen service, installed on the (reset) session fake upstream."""
    service = QwenService()
    fake_upstream.handler = service
    yield service


@pytest.fixture
def creds_path(tmp_path: Path) -> Path:
    return tmp_path / "qwen-home" / "oauth_creds.json"


def instance(upstream: FakeUpstream, creds: Path, **extra: Any) -> dict[str, Any]:
    """An instance file body pointing at the fake service, gate open, short rate-limit waits."""
    settings: dict[str, Any] = {
        "enable_qwen_oauth_backend_debugging_override": True,
        "credentials_path": str(creds),
        "token_url": upstream.base_url + TOKEN_PATH,
        "api_base": upstream.url,
        "qwen_oauth_initial_rate_limit_retry_max_wait_seconds": 0.2,
        "qwen_oauth_initial_rate_limit_retry_random_min_seconds": 0.01,
        "qwen_oauth_initial_rate_limit_retry_random_max_seconds": 0.05,
    }
    settings.update(extra)
    return {"connector": "qwen-oauth", "extra": settings}


@pytest.fixture
def qwen_config(fake_upstream: FakeUpstream, creds_path: Path,
                write_config: Callable[..., Path]) -> Callable[..., Path]:
    """``qwen_config(config_overrides, **extra)``: config with the `qwen-oauth.test` instance."""

    def make(config: dict[str, Any] | None = None, **extra: Any) -> Path:
        base: dict[str, Any] = {"default_backend": "qwen-oauth"}
        base.update(config or {})
        return write_config(base, {"qwen-oauth.test": instance(fake_upstream, creds_path, **extra)})

    return make


@pytest.fixture
def offline_proxy(qwen_config: Callable[..., Path]) -> Callable[..., Proxy]:
    """A Proxy that is built but not started (for hook-level tests)."""

    def make(cli: dict[str, Any] | None = None, **extra: Any) -> Proxy:
        return build_proxy(qwen_config(**extra), cli or {})

    return make
