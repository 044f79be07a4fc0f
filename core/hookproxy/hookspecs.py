"""The hooks a hookproxy plugin can implement. This module is the whole plugin contract.

A plugin is a module (or object) with functions decorated ``@hookproxy.hookimpl`` and is found
through the ``hookproxy`` entry-point group; the entry-point name is the connector name users
write in YAML (``qwen-oauth``, ``hybrid``). An implementation may accept fewer arguments than
the spec lists (pluggy passes only the ones it names), so hooks can grow arguments safely.

Hooks are synchronous. Where a hook may do I/O (``prepare_request``) it may *return* an
awaitable, which the core awaits in one place (``plugins.await_all``). ``async def`` is refused
on the firstresult hooks: a coroutine object is never ``None``, so it would always win.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

import pluggy
from pydantic import BaseModel

if TYPE_CHECKING:
    from .backend import Backend, BackendInstance, ChatCall, RetryDecision, UpstreamRequest
    from .errors import UpstreamError
    from .frontend import Frontend
    from .observe import AttemptEnded, RequestEnded
    from .proxy import Proxy
    from .sse import UpstreamStream

NAME = "hookproxy"
hookspec = pluggy.HookspecMarker(NAME)
hookimpl = pluggy.HookimplMarker(NAME)


# --- start-up -------------------------------------------------------------------------------


@hookspec
def settings_model() -> type[BaseModel] | None:
    """Declare the process-wide settings this plugin reads.

    Called once by the core while it builds the CLI and loads configuration. Return a pydantic
    model class (every field needs a default) or ``None``. For each field ``some_name`` the core
    offers the flag ``--some-name`` (a bool field becomes a switch), the env var
    ``HOOKPROXY_SOME_NAME`` and the YAML key ``backends.some_name``, with the precedence
    CLI > env > YAML > default, and validates the values with the model (an invalid value is a
    start-up error naming the key). A field may list extra flag spellings in
    ``json_schema_extra={"cli_aliases": ["--old_name"]}``. Plugins read the validated object
    with ``proxy.settings_for(Model)``. All implementations run.
    """


@hookspec(firstresult=True)
def resolve_backend(instance: BackendInstance, proxy: Proxy) -> Backend | None:
    """Turn a configured instance into a backend.

    Called once per instance at start-up, in configuration order. Return a
    :class:`~hookproxy.Backend` when ``instance.connector`` is yours, else ``None``. Validate
    ``instance.extra`` with your own pydantic model and raise
    :class:`~hookproxy.errors.ConfigError` naming ``instance.where()`` and the key on a bad
    value. ``instance.synthesized`` is true for the default instance offered to connectors
    nobody configured; the core keeps it only when the returned backend sets
    ``serves_unconfigured = True``. Must not do network I/O. Stops at the first non-``None`` result.
    """


@hookspec
def register_frontends(register: Callable[[Frontend], None], proxy: Proxy) -> None:
    """Contribute client protocols: call ``register(frontend)`` once per :class:`~hookproxy.Frontend`.

    Called once by the core while it builds the app, after every backend was resolved. A front
    end claims POST paths (``frontend.paths``) that the core serves through its one pipeline
    (auth, limits, routing, failover, stream checks) and extra endpoints
    (``frontend.endpoints()``). Two front ends claiming the same path is a start-up error naming
    both. The core's OpenAI chat-completions front end is registered through this hook too, by
    the core's own ``openai-chat`` entry point. All implementations run.
    """


# --- per request ----------------------------------------------------------------------------


@hookspec
def prepare_request(
    backend: Backend, call: ChatCall, request: UpstreamRequest
) -> Awaitable[None] | None:
    """Edit the outgoing HTTP request of an :class:`~hookproxy.HTTPBackend` in place.

    Called by the core before every upstream attempt (so again on a retry, with
    ``call.attempt`` > 1), after it set the URL, ``Authorization`` and loop-guard headers and
    the JSON body (``request.json``). Check ``backend`` is yours first. Return ``None`` when done,
    or an awaitable (e.g. to refresh a token) that the core awaits before sending; raise a
    ``ProxyError`` to refuse the call (e.g. 403 for a closed gate) before any I/O happens. All
    implementations run, in pluggy order (last registered first).
    """


@hookspec(firstresult=True)
def on_rate_limit(backend: Backend, call: ChatCall, error: UpstreamError) -> RetryDecision | None:
    """Decide what happens after an upstream attempt failed before any byte reached the client.

    Called by the core for every failed attempt (429, quota, 5xx, connection errors, timeouts;
    ``error.status`` tells which), with ``call.attempt`` counting the attempts on ``backend``.
    Return a :class:`~hookproxy.RetryDecision` (retry the same backend after ``wait`` seconds,
    fail over to the next candidate, or surface the error), or ``None`` to let later plugins and
    finally the core's failover policy decide. The core does the waiting (sending SSE keep-alives
    to a streaming client meanwhile) and the retry; a plugin must not sleep here. Stops at the
    first non-``None`` result.
    """


@hookspec(firstresult=True)
def stream_response(
    backend: Backend, call: ChatCall, stream: UpstreamStream
) -> AsyncIterator[bytes] | None:
    """Transform a successful streamed answer before it reaches the client.

    Called once per streamed reply of an :class:`~hookproxy.HTTPBackend`, after the upstream
    answered 2xx and before the first byte is relayed. Return an async iterator of SSE bytes,
    built from ``stream.events()`` (whole events, UTF-8 decoded incrementally) and
    ``hookproxy.sse.encode_event``, or ``None`` to relay the upstream bytes untouched (the fast
    path: no parsing, no re-encoding). Stops at the first non-``None`` result.
    """


# --- observers ----------------------------------------------------------------------------


@hookspec
def attempt_ended(event: AttemptEnded, proxy: Proxy) -> None:
    """Observe one upstream attempt: who, how it ended, how long, and what the core decided.

    Called by the core's attempt loop (for every front end) when an attempt answered or failed
    and its retry/failover decision was taken, with a :class:`~hookproxy.observe.AttemptEnded`.
    Must be quick and must not block: it runs on the request's event loop. An exception is
    logged once per plugin and never reaches the client. All implementations run.
    """


@hookspec
def request_ended(event: RequestEnded, proxy: Proxy) -> None:
    """Observe one client request after its answer (or its stream's last byte) went out.

    Called by the core's request pipeline (for every front end, errors included) with a
    :class:`~hookproxy.observe.RequestEnded`: front end, backend and model that answered,
    status, timings, proxy overhead, usage tokens, the proxy key's id and the request id. The
    built-in ``/metrics``, access log and ``/-/usage`` exporters are implemented with it. Must be
    quick and must not block; an exception is logged once per plugin and never reaches the
    client. All implementations run.
    """


__all__ = [
    "attempt_ended",
    "hookimpl",
    "on_rate_limit",
    "prepare_request",
    "register_frontends",
    "request_ended",
    "resolve_backend",
    "settings_model",
    "stream_response",
]
