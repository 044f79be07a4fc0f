"""From a parsed selector to a reply: candidates, attempts, retries and failover.

Every failed attempt is offered to plugins through ``on_rate_limit`` first (the qwen-oauth
connector's single retry lives there); when no plugin decides, :func:`core_policy` applies the
seed's rules (F-2). Recovery only happens here, i.e. before the first byte reached the client.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import TYPE_CHECKING, Any

from .backend import Backend, ChatCall, Reply, RetryDecision
from .errors import InvalidRequest, UpstreamError, UpstreamTimeout, UpstreamUnreachable
from .routing import Route, parse_chain, parse_route

if TYPE_CHECKING:
    from .config import Settings
    from .proxy import Proxy

log = logging.getLogger("hookproxy.failover")
_round_robin = itertools.count()


def request_body(body: dict[str, Any], route: Route) -> dict[str, Any]:
    """The body one backend gets: the client's fields, the upstream model, URI params on top."""
    prepared = dict(body)
    prepared["model"] = route.model
    prepared.update(route.params)
    return prepared


def expand_candidates(proxy: Proxy, routes: list[Route]) -> list[Route]:
    """Resolve bare models through failover_routes or the default backend (C-1, F-5)."""
    settings = proxy.settings
    candidates: list[Route] = []
    for route in routes:
        if route.backend is not None:
            candidates.append(route)
        elif route.model in settings.failover_routes:
            named = settings.failover_routes[route.model]
            elements = [parse_route(element) for element in named.elements]
            if named.policy == "round-robin":
                start = next(_round_robin) % len(elements)
                elements = elements[start:] + elements[:start]
            candidates.extend(elements)
        elif settings.default_backend:
            for element in parse_chain(settings.default_backend):
                if element.backend is None:  # a bare backend name: serve the client's model there
                    candidates.append(Route(element.model, route.model, route.params, f"{element.model}:{route.raw}"))
                else:
                    candidates.append(Route(element.backend, element.model, {**element.params, **route.params}))
        elif len(proxy.backends) == 1:
            (only,) = proxy.backends
            candidates.append(Route(only, route.model, route.params, route.raw))
        else:
            known = ", ".join(sorted(proxy.aliases)) or "none"
            raise InvalidRequest(
                f"model {route.raw!r} names no backend and no default backend is set; write "
                f"<backend>:<model> (backends: {known}) or start the proxy with --default-backend NAME",
                param="model",
                code="no_backend",
            )
    return candidates


def core_policy(settings: Settings, call: ChatCall, error: UpstreamError, has_next: bool) -> RetryDecision:
    """The seed's failure handling (F-2) for when no plugin decided."""
    status = error.status
    fail = RetryDecision("failover", 0.0, f"HTTP {status}") if has_next else RetryDecision("surface")
    if status == 429:
        wait = error.retry_after
        if wait is not None and wait <= settings.max_silent_wait and call.attempt == 1:
            return RetryDecision("retry", max(wait, settings.min_retry_wait), f"429, Retry-After {wait:g}s")
        return fail
    if isinstance(error, UpstreamTimeout):
        return fail
    if isinstance(error, UpstreamUnreachable) or status in (502, 503):
        if call.attempt == 1:
            return RetryDecision("retry", settings.min_retry_wait, f"{status}, retrying once")
        return fail
    if status in (401, 403) or status >= 500:
        return fail
    return RetryDecision("surface")


def decide(proxy: Proxy, backend: Backend, call: ChatCall, error: UpstreamError, has_next: bool) -> RetryDecision:
    decision = proxy.pm.hook.on_rate_limit(backend=backend, call=call, error=error)
    if decision is None:
        decision = core_policy(proxy.settings, call, error, has_next)
    if decision.action == "failover" and not has_next:
        return RetryDecision("surface")
    return decision


async def dispatch(
    proxy: Proxy, routes: list[Route], body: dict[str, Any], *, stream: bool, failover: bool = True
) -> Reply:
    candidates = expand_candidates(proxy, routes)
    if not failover:
        candidates = candidates[:1]
    last_error: UpstreamError | None = None
    for index, route in enumerate(candidates):
        backend = proxy.lookup(route.backend or "")
        call = ChatCall(body=request_body(body, route), route=route, stream=stream)
        has_next = index + 1 < len(candidates)
        while True:
            try:
                reply = await backend.handle(call, proxy)
            except UpstreamError as error:
                last_error = error
                decision = decide(proxy, backend, call, error, has_next and failover)
                if decision.action == "surface":
                    raise
                log.info("%s on %s: %s in %.1fs (%s)", error.status, backend.id, decision.action, decision.wait,
                         decision.reason)
                if decision.wait > 0:
                    await asyncio.sleep(decision.wait)
                if decision.action == "retry":
                    call.attempt += 1
                    continue
                break
            reply.backend = reply.backend or backend.id
            reply.model = reply.model or route.model
            return reply
    assert last_error is not None
    raise last_error
