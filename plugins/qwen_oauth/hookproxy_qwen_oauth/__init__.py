"""hookproxy-qwen-oauth: Qwen models through the Qwen CLI's OAuth credentials.

The hooks below are the whole plugin surface; read them first. The work lives in
``backend.py`` (request preparation and health), ``oauth.py`` (credentials cache, single-flight
and cross-process refresh), ``credentials.py`` / ``lockfile.py`` (the files shared with the
``qwen`` CLI) and ``ratelimit.py`` (the initial rate-limit retry).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Awaitable
from pathlib import Path

from pydantic import BaseModel

from hookproxy import (
    Backend,
    BackendInstance,
    ChatCall,
    ConfigError,
    Proxy,
    RetryDecision,
    UpstreamError,
    UpstreamRequest,
    hookimpl,
)

from .backend import STATE_KEY, QwenOAuthBackend
from .ratelimit import is_auth_error, is_recoverable, retry_wait
from .settings import CONNECTOR, QwenOAuthSettings, parse_extra

__all__ = ["QwenOAuthBackend", "QwenOAuthSettings"]

log = logging.getLogger("hookproxy.qwen_oauth")


@hookimpl
def settings_model() -> type[BaseModel]:
    """Contributes ``--enable-qwen-oauth-backend-debugging-override`` (and its env/YAML forms)."""
    return QwenOAuthSettings


#: Per proxy: resolved credentials file -> the instance that uses it (two may not share one).
_credentials_owners: weakref.WeakKeyDictionary[Proxy, dict[Path, BackendInstance]] = weakref.WeakKeyDictionary()


@hookimpl
def resolve_backend(instance: BackendInstance, proxy: Proxy) -> QwenOAuthBackend | None:
    """Also for the synthesized default: with no credentials it resolves and reports not usable."""
    if instance.connector != CONNECTOR:
        return None
    backend = QwenOAuthBackend(instance, parse_extra(instance), proxy)
    _claim_credentials(backend, proxy)
    return backend


def _claim_credentials(backend: QwenOAuthBackend, proxy: Proxy) -> None:
    """Two instances on one credentials file would refresh (and rotate) one token against each
    other, each invalidating the other's refresh token: refuse it at start-up."""
    owners = _credentials_owners.setdefault(proxy, {})
    path = backend.credentials_path.resolve()
    other = owners.setdefault(path, backend.instance)
    if other is not backend.instance:
        raise ConfigError(
            f"{other.where()} and {backend.instance.where()} both use the Qwen OAuth credentials file {path}; "
            "give each instance its own extra.credentials_path (or remove one instance)"
        )


@hookimpl
def prepare_request(backend: Backend, call: ChatCall, request: UpstreamRequest) -> Awaitable[None] | None:
    """The gate is checked here, synchronously, before any file or network I/O."""
    if not isinstance(backend, QwenOAuthBackend):
        return None
    backend.check_gate()
    return backend.prepare(call, request)


@hookimpl
def on_rate_limit(backend: Backend, call: ChatCall, error: UpstreamError) -> RetryDecision | None:
    """One forced refresh after an auth error (401/403, or the phrases the official client
    reads as a rejected token); one held retry of a rate limit."""
    if not isinstance(backend, QwenOAuthBackend):
        return None
    state = call.state.setdefault(STATE_KEY, {})
    if is_auth_error(error) and not state.get("auth_retried") and state.get("token"):
        state["auth_retried"] = True
        state["rejected_token"] = state["token"]
        return RetryDecision("retry", 0.0, f"upstream rejected the token (HTTP {error.status}): refreshing it once")
    if is_recoverable(error):
        if backend.extra.enable_qwen_oauth_initial_rate_limit_retry and not state.get("rate_limit_retried"):
            wait, why = retry_wait(error, backend.extra)
            backend.backoff.record(wait)
            state["rate_limit_retried"] = True
            return RetryDecision("retry", wait, f"Qwen OAuth initial rate-limit retry ({why})")
        if not state.get("rate_limit_retried"):
            # Retry turned off means no hidden wait here either (the core would wait on Retry-After).
            return RetryDecision("failover", 0.0, "Qwen OAuth initial rate-limit retry is disabled")
        return None
    log.warning("%s: the qwen-oauth connector does not retry an upstream HTTP %s; the proxy's failure handling "
                "decides", backend.id, error.status)
    return None
