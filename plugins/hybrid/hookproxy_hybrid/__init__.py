"""hookproxy-hybrid: a reasoning model thinks, an execution model answers, in one request.

``hybrid:[minimax:MiniMax-M2,qwen-oauth:qwen3-coder-plus]`` runs MiniMax-M2 until it has
finished thinking (streaming that reasoning to the client live), then asks qwen3-coder-plus
for the answer with the reasoning in its context. Both phases go through the core
(``proxy.complete``), so any backend the proxy can route works on either side.

Modules: ``spec`` (the model-string grammar), ``policy`` (settings, presets, whether to
reason), ``reasoning`` (capture and injection), ``scrub`` (cross-chunk tag filter), ``backend``
(the two phases and what the client receives).
"""

from __future__ import annotations

from pydantic import BaseModel

from hookproxy import BackendInstance, Proxy, hookimpl

from .backend import HybridBackend
from .policy import HybridSettings
from .spec import HybridSpec, Side, parse_spec

CONNECTOR = "hybrid"

__all__ = ["CONNECTOR", "HybridBackend", "HybridSettings", "HybridSpec", "Side", "parse_spec"]


@hookimpl
def settings_model() -> type[BaseModel]:
    return HybridSettings


@hookimpl
def resolve_backend(instance: BackendInstance, proxy: Proxy) -> HybridBackend | None:
    """Serve the ``hybrid`` connector, including the instance the core synthesizes for it."""
    if instance.connector != CONNECTOR:
        return None
    return HybridBackend(instance, proxy)
