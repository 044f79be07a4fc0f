"""From a parsed selector to candidates, and what to do when one of them fails.

Every failed attempt is offered to plugins through ``on_rate_limit`` first (the qwen-oauth
connector's single retry lives there); when no plugin decides, :func:`core_policy` applies the
failover table of the README. The attempt loop that acts on these decisions (waits, budget, hops) is
:mod:`hookproxy.failover`; recovery only happens before the first byte reached the client.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .backend import Backend, ChatCall, RetryDecision
from .errors import InvalidRequest, UpstreamError, UpstreamTimeout, UpstreamUnreachable
from .routing import Route, parse_chain, parse_route

if TYPE_CHECKING:
    from .config import Settings
    from .proxy import Proxy

def request_body(
    body: dict[str, Any], route: Route, defaults: Mapping[str, Mapping[str, Any]] | None = None,
    backend_id: str = "", max_output_tokens: int | None = None,
) -> dict[str, Any]:
    """The body one backend gets: ``model_defaults`` for fields the client did not send, the
    client's fields, the upstream model, URI params on top, and the output-token fields lowered
    to the backend's ``max_output_tokens`` when it has one."""
    prepared = dict(body)
    if defaults:
        for key, value in defaults_for(defaults, route, backend_id).items():
            if prepared.get(key) is None:
                prepared[key] = value
    prepared["model"] = route.model
    prepared.update(route.params)
    if max_output_tokens is not None:
        cap_output_tokens(prepared, max_output_tokens)
    return prepared


#: The canonical body's fields that bound the answer's length (OpenAI's old and new name).
OUTPUT_TOKEN_FIELDS = ("max_tokens", "max_completion_tokens")


def cap_output_tokens(body: dict[str, Any], cap: int) -> None:
    """Lower ``max_tokens`` / ``max_completion_tokens`` above ``cap`` to it, in place.

    Clients ask for what their favourite model allows (Claude Code sends 32000), and a backend
    whose model allows less refuses the whole request with a 400; answering with at most ``cap``
    tokens serves it. A smaller value the client asked for is kept, and a value that is not an
    integer is left for the upstream to judge.
    """
    for key in OUTPUT_TOKEN_FIELDS:
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > cap:
            body[key] = cap


def defaults_for(defaults: Mapping[str, Mapping[str, Any]], route: Route, backend_id: str) -> dict[str, Any]:
    """``model_defaults`` entries for this route: ``model``, then ``<backend>:<model>`` (by the
    instance id or the name the client used), the more specific winning."""
    merged: dict[str, Any] = {}
    for key in (route.model, f"{backend_id}:{route.model}", f"{route.backend}:{route.model}"):
        merged.update(defaults.get(key) or {})
    return merged


#: Most distinct selectors whose candidates are remembered per proxy (then the memory starts over).
CANDIDATE_CACHE_SIZE = 1024


def expand_candidates(proxy: Proxy, routes: list[Route]) -> list[Route]:
    """Resolve bare models through failover_routes or the default backend.

    Backends and settings are fixed once the proxy runs, so the answer for a selector is
    remembered (bounded), except where a round-robin route makes each answer different.
    """
    key = routes[0].raw if len(routes) == 1 else "|".join(route.raw for route in routes)
    cache = proxy.candidate_cache
    cached = cache.get(key)
    if cached is not None and key:
        return cached
    candidates, stable = _expand(proxy, routes)
    if stable and key:
        if len(cache) >= CANDIDATE_CACHE_SIZE:
            cache.clear()
        cache[key] = candidates
    return candidates


def _expand(proxy: Proxy, routes: list[Route]) -> tuple[list[Route], bool]:
    """The candidates, and whether the same routes always give the same ones."""
    settings = proxy.settings
    stable = True
    candidates: list[Route] = []
    for route in routes:
        if route.backend is not None:
            candidates.append(route)
        elif route.model in settings.failover_routes:
            named = settings.failover_routes[route.model]
            elements = [parse_route(element) for element in named.elements]
            if named.policy == "round-robin":
                stable = False
                start = proxy.round_robin.start(route.model, len(elements))
                elements = elements[start:] + elements[:start]
            candidates.extend(elements)
        elif settings.default_backend:
            for element in parse_chain(settings.default_backend):
                if element.backend is None:  # a bare backend name: serve the client's model there
                    candidates.append(Route(element.model, route.model, route.params, f"{element.model}:{route.raw}"))
                else:
                    candidates.append(Route(element.backend, element.model, {**element.params, **route.params}))
        elif len(configured := proxy.configured_backends()) == 1:
            candidates.append(Route(configured[0].id, route.model, route.params, route.raw))
        else:
            known = ", ".join(sorted(proxy.aliases)) or "none"
            raise InvalidRequest(
                f"model {route.raw!r} names no backend and no default backend is set; write "
                f"<backend>:<model> (backends: {known}) or start the proxy with --default-backend NAME",
                param="model",
                code="no_backend",
            )
    return candidates, stable


#: Statuses after which another backend may well succeed (the client's request is not at fault).
FAILOVER_STATUSES = frozenset({401, 403, 404, 408})


def core_policy(settings: Settings, call: ChatCall, error: UpstreamError, has_next: bool) -> RetryDecision:
    """What to do after a failed attempt when no plugin decided (the README's failover table).

    Retries stay on the same backend once (``call.attempt == 1``): a backend that fails twice is
    better replaced than hammered, and the qwen-oauth plugin's own retry already ran first.
    ``failover`` without a next candidate is turned into ``surface`` by the caller.
    """
    status = error.status
    if status == 429:
        wait = error.retry_after
        if wait is not None and wait <= settings.max_silent_wait and call.attempt == 1:
            return RetryDecision("retry", max(wait, settings.min_retry_wait), f"429, Retry-After {wait:g}s")
        why = "no Retry-After" if wait is None else f"Retry-After {wait:g}s"
        return RetryDecision("failover", 0.0, f"429, {why}")
    if isinstance(error, UpstreamTimeout):
        return RetryDecision("failover", 0.0, f"timeout: {error.message}")
    if getattr(error, "fail_over_at_once", False):
        return RetryDecision("failover", 0.0, error.message)
    if isinstance(error, UpstreamUnreachable) or status in (502, 503):
        if call.attempt == 1:
            hint = error.retry_after or 0.0
            hint = hint if hint <= settings.max_silent_wait else 0.0
            return RetryDecision("retry", max(hint, settings.min_retry_wait), f"{_label(error)}, retrying once")
        return RetryDecision("failover", 0.0, _label(error))
    if status in FAILOVER_STATUSES or status >= 500:
        return RetryDecision("failover", 0.0, _label(error))
    return RetryDecision("surface", 0.0, f"HTTP {status} is not retryable")


def _label(error: UpstreamError) -> str:
    if isinstance(error, UpstreamUnreachable) and error.status == 502:
        return "connection error"
    return f"HTTP {error.status}"


def decide(
    proxy: Proxy, backend: Backend, call: ChatCall, error: UpstreamError, has_next: bool, *, core: bool = True
) -> RetryDecision:
    """Plugins first (``on_rate_limit``), then :func:`core_policy` unless ``core`` is off.

    ``core=False`` is a call made without failover (a hybrid phase): its error goes back to
    the caller, whose own attempt loop decides, once, within the request's one budget.
    """
    hook = proxy.hooks.caller("on_rate_limit", backend)
    decision = None if hook is None else hook(backend=backend, call=call, error=error)
    if isinstance(decision, RetryDecision):
        return decision
    if not core:
        return RetryDecision("surface", 0.0, f"HTTP {error.status}: left to the caller (no failover here)")
    return core_policy(proxy.settings, call, error, has_next)

