"""What the core tells observers: one event per upstream attempt and one per client request.

Observers are plugins implementing the ``attempt_ended`` and ``request_ended`` hooks (the
built-in exporters in :mod:`hookproxy.exporters` are such plugins). The core fires both events
itself, from the one request pipeline, so they look the same for every front end. An observer
cannot slow a request by much or break it: it runs after the answer (or the stream's last byte)
went out, and an exception it raises is logged once per plugin and otherwise ignored.

Usage comes from the upstream's own usage block, in whichever protocol it answered: OpenAI chat
(``prompt_tokens``...), Anthropic (``input_tokens``, ``cache_read_input_tokens``...) or the
Responses API (``input_tokens_details``...). The core asks OpenAI-compatible upstreams for a
usage chunk on streams and keeps it from chat clients that did not ask for one.
"""

from __future__ import annotations

import contextvars
import logging
import os
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import pluggy

log = logging.getLogger("hookproxy.observe")

#: The id of the request being served, for log lines (see :class:`RequestIdFilter`).
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("hookproxy_request_id", default="-")
REQUEST_ID_HEADER = "x-request-id"
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")
#: Request ids only need to be unique, not unguessable: a seeded PRNG instead of a getrandom
#: system call per request (2.6% of the CPU per request in the bench profile).
_ids = random.Random(os.urandom(16))
os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(16)))  # forked workers: distinct ids


def new_request_id(supplied: str | None = None) -> str:
    """The client's ``x-request-id`` when it is a short token of safe characters, else a new one."""
    if supplied is not None and _VALID_REQUEST_ID.fullmatch(supplied):
        return supplied
    return f"{_ids.getrandbits(64):016x}"


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` so every log line about a request carries its id."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


@dataclass(slots=True)
class Usage:
    """Tokens of one answer: ``input`` excludes nothing (it is what the upstream billed as input),
    ``cached`` is the part of the input read from a prompt cache, ``reasoning`` the part of the
    output spent thinking."""

    input: int = 0
    output: int = 0
    cached: int = 0
    reasoning: int = 0

    @classmethod
    def from_block(cls, block: Mapping[str, Any]) -> Usage:
        """Read an OpenAI, Anthropic or Responses usage object."""
        if "prompt_tokens" in block or "completion_tokens" in block:
            prompt = block.get("prompt_tokens_details")
            completion = block.get("completion_tokens_details")
            return cls(_int(block.get("prompt_tokens")), _int(block.get("completion_tokens")),
                       _int(prompt.get("cached_tokens")) if isinstance(prompt, dict) else 0,
                       _int(completion.get("reasoning_tokens")) if isinstance(completion, dict) else 0)
        input_details = block.get("input_tokens_details") or {}
        output_details = block.get("output_tokens_details") or {}
        cache_read = _int(block.get("cache_read_input_tokens"))
        cached = cache_read or _int(input_details.get("cached_tokens"))
        # Anthropic's input_tokens exclude cache reads and writes; count what was billed as input.
        anthropic_extra = cache_read + _int(block.get("cache_creation_input_tokens"))
        return cls(_int(block.get("input_tokens")) + anthropic_extra, _int(block.get("output_tokens")), cached,
                   _int(output_details.get("reasoning_tokens")))

    def merge(self, other: Usage) -> None:
        """Keep the largest figure of each kind (Anthropic streams report input and output apart)."""
        self.input = max(self.input, other.input)
        self.output = max(self.output, other.output)
        self.cached = max(self.cached, other.cached)
        self.reasoning = max(self.reasoning, other.reasoning)


def _int(value: Any) -> int:
    return value if type(value) is int else 0  # not a bool, not a float


def usage_in(payload: Any) -> Usage | None:
    """The usage in one parsed answer or event (top level, ``message`` or ``response``)."""
    if not isinstance(payload, dict):
        return None
    usage = payload.get("usage")
    if "message" not in payload and "response" not in payload:  # a chat completion: one place to look
        return Usage.from_block(usage) if isinstance(usage, dict) else None
    found: Usage | None = None
    for holder in (payload, payload.get("message"), payload.get("response")):
        if isinstance(holder, dict) and isinstance(holder.get("usage"), dict):
            usage = Usage.from_block(holder["usage"])
            if found is None:
                found = usage
            else:
                found.merge(usage)
    return found


def usage_in_body(body: bytes) -> Usage | None:
    """The usage of a non-streamed JSON answer; cheap when there is none."""
    if b'"usage"' not in body:
        return None
    try:
        return usage_in(orjson.loads(body))
    except orjson.JSONDecodeError:
        return None


@dataclass(slots=True)
class AttemptEnded:
    """One upstream attempt ended: answered (``decision`` "answered") or failed and decided.

    ``status`` is the upstream's HTTP status (``None`` when it never answered); ``error`` the
    kind of failure (``http``, ``timeout``, ``unreachable``, ``bad_stream``, ``refused``) or
    ``None``. ``attempt`` counts attempts on this backend for this request, ``index`` all of the
    request's attempts. For a stream the attempt ends when its answer starts (``ttfb`` equals
    ``duration``); the request event has the stream's whole duration.
    """

    request_id: str
    frontend: str
    backend: str
    model: str
    attempt: int
    index: int
    status: int | None
    error: str | None
    decision: str
    ttfb: float | None
    duration: float


@dataclass(slots=True)
class RequestEnded:
    """One client request ended (its last byte went out, or the client left).

    ``backend``/``model`` name who answered (empty when nobody did); ``status`` is the HTTP
    status sent (a stream that failed after its first byte keeps 200 and sets ``error``);
    ``ttfb`` is the time to the first byte sent to the client; ``overhead`` the time spent in the
    proxy itself, excluding upstream time and retry waits; ``key_id`` names the proxy key
    (``key-`` and a short hash, never the key); times are seconds.
    """

    request_id: str
    frontend: str
    path: str
    backend: str
    model: str
    status: int
    stream: bool
    started: float
    duration: float
    ttfb: float | None
    overhead: float
    upstream: float
    usage: Usage | None
    key_id: str | None
    error: str | None
    attempts: int
    failovers: int


Observer = Callable[..., object]


class Observers:
    """The observer hook implementations, called directly (not through pluggy) so that one
    observer's exception cannot reach the request or stop the others; each plugin's first
    failure is logged with its traceback, later ones are ignored. ``in_flight`` counts the
    client requests being served (for a gauge)."""

    def __init__(self, pm: pluggy.PluginManager, proxy: object) -> None:
        self.attempt = _impls(pm, "attempt_ended", proxy)
        self.request = _impls(pm, "request_ended", proxy)
        self._failed: set[str] = set()
        self.in_flight = 0

    def attempt_ended(self, event: AttemptEnded) -> None:
        for name, observer, proxy in self.attempt:
            try:
                observer(event) if proxy is None else observer(event, proxy)
            except Exception:  # noqa: BLE001 - an observer must never break a request
                self._failed_once(name)

    def request_ended(self, event: RequestEnded) -> None:
        for name, observer, proxy in self.request:
            try:
                observer(event) if proxy is None else observer(event, proxy)
            except Exception:  # noqa: BLE001 - an observer must never break a request
                self._failed_once(name)

    def _failed_once(self, name: str) -> None:
        if name not in self._failed:
            self._failed.add(name)
            log.exception("observer %r failed (logged once; the request was not affected)", name)


def _impls(pm: pluggy.PluginManager, hook_name: str, proxy: object) -> list[tuple[str, Observer, object | None]]:
    """Each implementation, to be called with the event first and the proxy second when it asks
    for it (positional arguments: one call per observer and event, no keyword dictionary)."""
    observers: list[tuple[str, Observer, object | None]] = []
    for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls()):
        function = impl.function
        names = tuple(impl.argnames)
        if names == ("event",):
            observers.append((impl.plugin_name, function, None))
        elif names == ("event", "proxy"):
            observers.append((impl.plugin_name, function, proxy))
        else:  # another order, or only some of the arguments: passed by name
            observers.append((impl.plugin_name, _by_name(function, names, proxy), None))
    return observers


def _by_name(function: Observer, names: tuple[str, ...], proxy: object) -> Observer:
    def observer(event: object) -> object:
        arguments = {"event": event, "proxy": proxy}
        return function(**{name: arguments[name] for name in names})

    return observer


class Trace:
    """One request's timings and outcome, filled in along the pipeline, turned into events."""

    __slots__ = ("observers", "request_id", "frontend", "path", "started", "wall", "key_id", "stream", "backend",
                 "model", "first_byte", "upstream", "waits", "usage", "attempts", "failovers", "error", "done")

    def __init__(self, observers: Observers, request_id: str, frontend: str, path: str) -> None:
        self.observers = observers
        self.request_id = request_id
        self.frontend = frontend
        self.path = path
        self.started = time.perf_counter()
        self.wall = time.time()
        self.key_id: str | None = None
        self.stream = False
        self.backend = ""
        self.model = ""
        self.first_byte: float | None = None
        self.upstream = 0.0
        self.waits = 0.0
        self.usage: Usage | None = None
        self.attempts = 0
        self.failovers = 0
        self.error: str | None = None
        self.done = False
        observers.in_flight += 1

    def add_usage(self, usage: Usage | None) -> None:
        if usage is None:
            return
        if self.usage is None:
            self.usage = usage
        else:
            self.usage.merge(usage)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def overhead(self) -> float:
        """Time in the proxy so far, excluding upstream time and retry waits."""
        end = self.first_byte if self.first_byte is not None else self.elapsed()
        return max(0.0, end - self.upstream - self.waits)

    def attempt_ended(self, backend: str, model: str, attempt: int, status: int | None, error: str | None,
                      decision: str, duration: float, ttfb: float | None) -> None:
        self.attempts += 1
        self.upstream += duration
        if decision == "failover":
            self.failovers += 1
        if self.observers.attempt:
            self.observers.attempt_ended(AttemptEnded(self.request_id, self.frontend, backend, model, attempt,
                                                      self.attempts, status, error, decision, ttfb, duration))

    def end(self, status: int) -> None:
        """Fire ``request_ended`` once."""
        if self.done:
            return
        self.done = True
        self.observers.in_flight -= 1
        if not self.observers.request:
            return
        duration = self.elapsed()
        self.observers.request_ended(RequestEnded(
            self.request_id, self.frontend, self.path, self.backend, self.model, status, self.stream, self.wall,
            duration, self.first_byte, self.overhead(), self.upstream, self.usage, self.key_id, self.error,
            self.attempts, self.failovers))


def error_kind(error: Exception) -> str:
    """A short, bounded name for a failure (a metrics label, never a message)."""
    from .errors import UpstreamError, UpstreamTimeout, UpstreamUnreachable

    name = type(error).__name__
    if name == "BadStream":
        return "bad_stream"
    if isinstance(error, UpstreamTimeout):
        return "timeout"
    if isinstance(error, UpstreamUnreachable):
        return "unreachable"
    if isinstance(error, UpstreamError):
        return "http"
    return "refused"
