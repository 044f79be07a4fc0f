"""hookproxy-responses: the OpenAI Responses API (``POST /v1/responses``) over every backend.

The Codex CLI and the newer OpenAI SDK agents speak only the Responses API. This front end
translates their requests into hookproxy's canonical chat-completions call, so the core's
routing, auth, limits and failover serve them with any backend (an OpenAI-compatible API, a
failover chain, the hybrid), and translates the answers back, streamed or not.

Modules: ``request`` (Responses request to chat body), ``tools`` (tool shapes and names both
ways), ``response`` (the response object, usage, output items, failure codes), ``events`` (the
event stream), ``store`` (the optional response store behind ``previous_response_id``),
``frontend`` (the front end itself), ``settings``.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel

from hookproxy import Frontend, Proxy, hookimpl

from .frontend import PROTOCOL, ResponsesFrontend
from .settings import ResponsesSettings
from .store import MemoryStore, ResponseStore, SharedStore

__all__ = ["PROTOCOL", "MemoryStore", "ResponseStore", "ResponsesFrontend", "ResponsesSettings"]


@hookimpl
def settings_model() -> type[BaseModel]:
    return ResponsesSettings


@hookimpl
def register_frontends(register: Callable[[Frontend], None], proxy: Proxy) -> None:
    settings = proxy.settings_for(ResponsesSettings)
    store: ResponseStore | None = None
    if settings.responses_store and proxy.state.shared:  # every worker and host sees every response
        store = SharedStore(proxy.state, settings.responses_store_max_age)
    elif settings.responses_store:
        store = MemoryStore(settings.responses_store_max_entries, settings.responses_store_max_age)
    register(ResponsesFrontend(settings, store))
