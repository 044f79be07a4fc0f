"""The attempt loop: try candidates in order, retry, wait, fail over, or give up.

:class:`Attempts` keeps the state of one request's attempts and is driven from outside:
``next()`` returns a :class:`~hookproxy.Reply`, or the seconds to wait before calling it again.
The driver does the waiting, so the app can commit a streaming response and send keep-alive
comments meanwhile (:mod:`hookproxy.streaming`), while :func:`complete` simply sleeps.

Bounds: ``total_timeout_budget`` (monotonic, from the start of the request) limits waits and,
once a request is in failover mode, each attempt's time up to its first output;
``max_failover_hops`` limits the backends tried after the first. When either runs out, the last
error surfaces; a 429 always carries ``Retry-After``. Every decision is one INFO line on
``hookproxy.failover``.

Before each attempt the backend's cooldown (:mod:`hookproxy.cooldown`, learned from
``Retry-After`` here or on another host) is consulted: a cooling backend is failed over without
being called, or waited for when it is the last candidate.

Hot path: a request with one candidate that succeeds does one ``handle`` call and a few
attribute checks; no timer, no stream peeking here (the app still reads a stream to its first
event before answering, see ``endpoint.respond``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import TYPE_CHECKING, Any

from .backend import Backend, ChatCall, Reply
from .dispatch import decide, expand_candidates, request_body
from .errors import ProxyError, UpstreamError, UpstreamTimeout
from .observe import error_kind
from .streamcheck import first_output

if TYPE_CHECKING:
    from .frontend import ClientRequest
    from .observe import Trace
    from .proxy import Proxy
    from .routing import Route

log = logging.getLogger("hookproxy.failover")

#: A plugin that keeps answering "retry" cannot pin a request to one backend forever.
MAX_ATTEMPTS_PER_BACKEND = 10
#: Statuses of a plugin's own errors (not upstream answers) after which the next candidate is tried.
LOCAL_FAILOVER_STATUSES = frozenset({401, 403, 429})


class Attempts:
    """One request's way through its candidates; see the module docstring."""

    __slots__ = ("proxy", "candidates", "body", "stream", "client", "trace", "index", "hops", "call", "started",
                 "last_error", "count", "shortest_retry_after", "core_policy")

    def __init__(self, proxy: Proxy, candidates: list[Route], body: dict[str, Any], stream: bool,
                 client: ClientRequest | None = None, trace: Trace | None = None, core_policy: bool = True) -> None:
        self.proxy = proxy
        self.client = client
        self.trace = trace
        self.candidates = candidates
        self.body = body
        self.stream = stream
        self.index = 0
        self.hops = 0
        self.call: ChatCall | None = None
        self.started = time.monotonic()
        self.last_error: ProxyError | None = None
        self.count = 0
        self.shortest_retry_after: float | None = None
        #: Off for calls without failover: only plugin decisions (e.g. a connector's own retry) apply.
        self.core_policy = core_policy

    @classmethod
    def start(cls, proxy: Proxy, routes: list[Route], body: dict[str, Any], *, stream: bool,
              failover: bool = True, client: ClientRequest | None = None, trace: Trace | None = None) -> Attempts:
        candidates = expand_candidates(proxy, routes)
        return cls(proxy, candidates if failover else candidates[:1], body, stream, client, trace,
                   core_policy=failover)

    def _has_next(self) -> bool:
        return self.index + 1 < len(self.candidates) and self.hops < self.proxy.settings.max_failover_hops

    def remaining(self) -> float:
        return self.proxy.settings.total_timeout_budget - (time.monotonic() - self.started)

    async def next(self) -> Reply | float:
        """Attempt until a reply (returned) or a wait (seconds, returned); raise when giving up."""
        proxy = self.proxy
        while True:
            if proxy.cooldowns and (wait := self._past_cooldowns()) > 0:
                return wait
            route = self.candidates[self.index]
            backend = proxy.lookup(route.backend or "")
            call = self.call
            if call is None:
                body = request_body(self.body, route, proxy.settings.model_defaults, backend.id,
                                    backend.instance.max_output_tokens)
                call = self.call = ChatCall(body=body, route=route, stream=self.stream, client=self.client,
                                             request_id=self.trace.request_id if self.trace else "")
            has_next = self._has_next()
            self.count += 1
            attempt = call.attempt
            began = time.perf_counter()
            try:
                _check_usable(backend)
                if has_next or self.count > 1:
                    reply = await self._guarded(backend, call, has_next)
                else:
                    reply = await backend.handle(call, proxy)
            except UpstreamError as error:
                wait = await self._upstream_failed(backend, route, call, error, has_next, began)
            except ProxyError as error:
                # A plugin's own refusal (dead credentials, a closed gate): no retry, but another
                # backend can serve; a bad request stays the client's problem.
                spent = time.perf_counter() - began
                if not has_next or not (error.status in LOCAL_FAILOVER_STATUSES or error.status >= 500):
                    self._observe(backend, route, attempt, error, "surface", spent)
                    raise
                self.last_error = error
                wait = self._fail_over(backend, 0.0, f"{backend.id} refused: HTTP {error.status}: {error.message}")
                self._observe(backend, route, attempt, error, "failover", spent)
            else:
                reply.backend = reply.backend or backend.id
                reply.model = reply.model or route.model
                trace = self.trace
                if trace is not None:
                    spent = time.perf_counter() - began
                    trace.backend, trace.model = reply.backend, reply.model
                    trace.attempt_ended(reply.backend, reply.model, attempt, reply.status, None, "answered", spent,
                                        spent)
                if self.count > 1:
                    log.info("failover: %s:%s answered after %d attempts in %.1fs", backend.id, route.model,
                             self.count, time.monotonic() - self.started)
                return reply
            if wait > 0:
                return wait

    async def _upstream_failed(self, backend: Backend, route: Route, call: ChatCall, error: UpstreamError,
                               has_next: bool, began: float) -> float:
        """Learn a cooldown from the answer, decide (retry, fail over, give up), report the attempt."""
        attempt = call.attempt
        await self.proxy.cooldowns.learn(backend.id, error)
        spent = time.perf_counter() - began
        try:
            wait = self._after_failure(backend, call, error, has_next)
        except ProxyError:
            self._observe(backend, route, attempt, error, "surface", spent)
            raise
        self._observe(backend, route, attempt, error, "retry" if self.call is call else "failover", spent)
        return wait

    def _observe(self, backend: Backend, route: Route, attempt: int, error: ProxyError, decision: str,
                 spent: float) -> None:
        trace = self.trace
        if trace is not None:
            kind = error_kind(error)
            status = error.status if kind == "http" else None  # what the upstream answered, if it did
            trace.attempt_ended(backend.id, route.model, attempt, status, kind, decision, spent, None)

    async def _guarded(self, backend: Backend, call: ChatCall, has_next: bool) -> Reply:
        """One attempt bounded by the remaining budget; streams are checked up to their first output."""
        remaining = self.remaining()
        if remaining <= 0:
            raise _budget_timeout(backend, self.proxy.settings.total_timeout_budget)
        try:
            async with asyncio.timeout(remaining) as scope:
                reply = await backend.handle(call, self.proxy)
                if reply.chunks is not None and has_next:
                    reply.backend = reply.backend or backend.id
                    reply = await first_output(reply, self.proxy.stream_judge(reply.protocol))
                return reply
        except TimeoutError:
            if scope.expired():
                raise _budget_timeout(backend, self.proxy.settings.total_timeout_budget) from None
            raise

    def _after_failure(self, backend: Backend, call: ChatCall, error: UpstreamError, has_next: bool) -> float:
        """Apply the decision for one failed attempt; return the wait before the next one."""
        self.last_error = error
        if error.status == 429 and error.retry_after is not None:
            shortest = self.shortest_retry_after
            self.shortest_retry_after = error.retry_after if shortest is None else min(shortest, error.retry_after)
        if isinstance(error, BudgetExhausted):
            raise self._give_up("the total_timeout_budget ran out")
        decision = decide(self.proxy, backend, call, error, has_next, core=self.core_policy)
        remaining = self.remaining()
        action, wait = decision.action, max(0.0, decision.wait)
        if action == "retry" and call.attempt >= MAX_ATTEMPTS_PER_BACKEND:
            action, wait = "failover", 0.0
        if action == "retry" and wait >= remaining and has_next:
            action, wait = "failover", 0.0  # waiting here would eat the whole budget
        if action == "surface":
            raise self._give_up(decision.reason or f"HTTP {error.status} is not retryable")
        if action == "failover" and not has_next:
            why = "max_failover_hops reached" if self.index + 1 < len(self.candidates) else "no other candidate"
            raise self._give_up(f"{decision.reason or _describe(error)}; {why}")
        if wait >= remaining:
            raise self._give_up(f"{decision.reason or _describe(error)}; waiting {wait:g}s would exceed "
                                f"the total_timeout_budget ({remaining:.1f}s left)")
        if action == "retry":
            log.info("failover: waiting %.1fs before retrying %s (%s)", wait, backend.id,
                     decision.reason or _describe(error))
            call.attempt += 1
            return wait
        return self._fail_over(backend, wait, decision.reason or _describe(error))

    def _past_cooldowns(self) -> float:
        """Fail over past candidates that are cooling down; the wait when one must be waited for."""
        while True:
            backend = self.proxy.lookup(self.candidates[self.index].backend or "")
            cooling = self.proxy.cooldowns.remaining(backend.id)
            if cooling <= 0:
                return 0.0
            wait = self._cooling_down(backend, cooling)  # 0.0: failed over to the next candidate
            if wait > 0:
                return wait

    def _cooling_down(self, backend: Backend, seconds: float) -> float:
        """A backend some request (here or on another host) saw rate-limited is not called now:
        fail over to the next candidate, or wait when it is the last one (or this request is
        already retrying it) and the wait is short enough (``max_silent_wait``, the budget), or
        give up with 429 and ``Retry-After``."""
        reason = f"{backend.id} is cooling down for {seconds:.1f}s after {self.proxy.cooldowns.reason(backend.id)}"
        seen = self.last_error
        if not (self.call is not None and isinstance(seen, UpstreamError) and seen.backend == backend.id):
            # Not this request's own answer from this backend (which stays the error to surface).
            self.last_error = UpstreamError(f"{reason}; try again later", status=429, retry_after=seconds,
                                            backend=backend.id)
        shortest = self.shortest_retry_after
        self.shortest_retry_after = seconds if shortest is None else min(shortest, seconds)
        can_wait = seconds <= self.proxy.settings.max_silent_wait and seconds < self.remaining()
        retrying = self.call is not None  # this request already chose to wait for this backend
        if self._has_next() and not (retrying and can_wait):
            return self._fail_over(backend, 0.0, reason)
        if can_wait:
            log.info("failover: waiting %.1fs before calling %s (%s)", seconds, backend.id, reason)
            return seconds
        raise self._give_up(reason)

    def _fail_over(self, backend: Backend, wait: float, reason: str) -> float:
        following = self.candidates[self.index + 1]
        log.info("failover: failing over from %s to %s%s (%s)", backend.id, following,
                 f" in {wait:.1f}s" if wait else "", reason)
        self.index += 1
        self.hops += 1
        self.call = None
        return wait

    def _give_up(self, reason: str) -> ProxyError:
        error = self.last_error
        assert error is not None
        log.info("failover: giving up after %d attempt%s in %.1fs: %s", self.count, "s" if self.count != 1 else "",
                 time.monotonic() - self.started, reason)
        if error.status == 429 and "Retry-After" not in error.headers:
            hint = self.shortest_retry_after
            if hint is None:
                hint = max(1.0, self.proxy.settings.min_retry_wait)
            error.headers["Retry-After"] = str(max(1, math.ceil(hint)))
        return error


def _check_usable(backend: Backend) -> None:
    """A backend not usable as configured (an empty key) is refused here, before anything is sent."""
    refusal = backend.refusal()
    if refusal is not None:
        raise refusal


def _describe(error: UpstreamError) -> str:
    return f"HTTP {error.status}: {error.message}"


class BudgetExhausted(UpstreamTimeout):
    """The request's total_timeout_budget ran out during an attempt (504, no further attempt)."""


def _budget_timeout(backend: Backend, budget: float) -> BudgetExhausted:
    return BudgetExhausted(
        f"backend {backend.id!r} gave no answer within the {budget:g}s failover budget "
        "(total_timeout_budget)",
        backend=backend.id,
    )


async def complete(
    proxy: Proxy, routes: list[Route], body: dict[str, Any], *, stream: bool, failover: bool = True
) -> Reply:
    """Run every attempt to the end, sleeping through waits (no client to keep warm)."""
    attempts = Attempts.start(proxy, routes, body, stream=stream, failover=failover)
    while True:
        step = await attempts.next()
        if isinstance(step, Reply):
            return step
        await asyncio.sleep(step)
