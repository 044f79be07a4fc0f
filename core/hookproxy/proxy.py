"""The running proxy: resolved backends, the shared upstream client, and the HTTP pipeline.

One :class:`Proxy` per app. Plugins receive it in ``resolve_backend`` and ``Backend.handle``;
through it they read their settings (``settings_for``), reach other backends
(``complete``: the hybrid does this), use the shared HTTP client (``http``) and the state shared
with other workers and hosts (``state``, see :mod:`hookproxy.state`).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import AsyncIterator, Mapping
from typing import Any, TypeVar

import httpx
import orjson
import pluggy
from pydantic import BaseModel

from .backend import Backend, BackendInstance, ChatCall, HTTPBackend, Reply, UpstreamRequest
from .backend_hooks import BackendHooks
from .config import LoadedConfig, Settings
from .cooldown import Cooldowns
from .dispatch import expand_candidates
from .encoding import Decoder, decoder_for
from .errors import ConfigError, ShuttingDown, UnknownBackend, UpstreamError, UpstreamTimeout, UpstreamUnreachable
from .failover import complete as complete_with_failover
from .frontend import Frontend
from .observe import REQUEST_ID_HEADER, Observers, usage_in
from .plugins import await_all, tracing_hooks
from .redaction import Redactor, credential_values
from .roundrobin import RoundRobin
from .routing import Route, parse_chain
from .sse import UpstreamStream
from .state import SharedState, open_state
from .streamcheck import Judge, openai_started
from .streamguard import SHUTDOWN_REASON, StreamGuard
from .transport import AiohttpTransport, HttpxUpstream, UpstreamClient, UpstreamResponse
from .upstream_pool import NativeUpstreamClient, make_ssl_context

log = logging.getLogger("hookproxy")

LOOP_GUARD_HEADER = "x-hookproxy-loop-guard"
#: Upstream error bodies larger than this are cut before parsing (a broken upstream, not a model).
MAX_ERROR_BODY = 1024 * 1024

M = TypeVar("M", bound=BaseModel)


class Proxy:
    """Backends by name, plugin settings, and the one upstream client (opened by ``start``)."""

    def __init__(
        self,
        pm: pluggy.PluginManager,
        config: LoadedConfig,
        plugin_settings: Mapping[type[BaseModel], BaseModel] | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.pm = pm
        #: Per-backend callers of the per-request hooks (skipped where no plugin acts).
        self.hooks = BackendHooks(pm, skip=not tracing_hooks())
        self.config = config
        self.settings: Settings = config.settings
        self._plugin_settings = dict(plugin_settings or {})
        self._transport_override = transport
        self.transport: httpx.AsyncBaseTransport | None = None
        #: The client of the proxy path (``upstream_client``); plugins' own calls use ``http``.
        self.upstream: UpstreamClient | None = None
        self._http: httpx.AsyncClient | None = None
        self.backends: dict[str, Backend] = {}
        self.aliases: dict[str, str] = {}
        self.skipped: dict[str, str] = {}
        #: Failover candidates by selector (``dispatch.expand_candidates``); read-only lists.
        self.candidate_cache: dict[str, list[Route]] = {}
        #: State shared with the other workers and hosts (in this process without ``state:``).
        self.state: SharedState = open_state(self.settings.state)
        self.cooldowns = Cooldowns(self.state, enabled=self.settings.learn_cooldowns)
        self.round_robin = RoundRobin(self.state)
        self._resolve_backends(config.instances)
        self.observers = Observers(pm, self)
        self.frontends: list[Frontend] = []
        self._judges: dict[str, Judge] = {}
        #: The guards of upstream streams still running (ended at shutdown, see ``end_streams``).
        self._guards: weakref.WeakSet[StreamGuard] = weakref.WeakSet()
        self.stopping = False
        #: What plugins keep per proxy (an exporter's tallies, a front end's caches), by a key of
        #: their own; a plain dict, so an observer called on every request finds its state cheaply.
        self.plugin_state: dict[str, Any] = {}
        self.pm.hook.register_frontends(register=self._register_frontend, proxy=self)

    # --- settings and backends --------------------------------------------------------------

    def settings_for(self, model: type[M]) -> M:
        """The validated settings object a plugin declared with ``settings_model``."""
        value = self._plugin_settings.get(model)
        if value is None:
            value = model()
            self._plugin_settings[model] = value
        assert isinstance(value, model)
        return value

    def _resolve_backends(self, instances: list[BackendInstance]) -> None:
        # A connector is a plugin that resolves backends (front ends and helpers are not).
        connectors = {impl.plugin_name for impl in self.pm.hook.resolve_backend.get_hookimpls()}
        configured = {instance.connector for instance in instances}
        synthesized = [
            BackendInstance(id=f"{name}.default", connector=name, synthesized=True)
            for name in sorted(connectors - configured)
        ]
        for instance in [*instances, *synthesized]:
            if instance.connector not in connectors:
                self._skip_unknown_connector(instance, connectors)
                continue
            backend = self.pm.hook.resolve_backend(instance=instance, proxy=self)
            if backend is None:
                if not instance.synthesized:
                    raise ConfigError(f"{instance.where()}: connector {instance.connector!r} did not accept it")
                continue
            if instance.synthesized and not backend.serves_unconfigured:
                continue  # the plugin needs configuration: an installed plugin adds no backend by itself
            self.backends[instance.id] = backend
        self.aliases = _aliases(self.backends)

    def _skip_unknown_connector(self, instance: BackendInstance, connectors: set[str]) -> None:
        """A connector of a plugin blocked by HOOKPROXY_DISABLE_PLUGINS is skipped; any other is a typo."""
        installed = ", ".join(sorted(connectors))
        if not self.pm.is_blocked(instance.connector):
            raise ConfigError(
                f"{instance.where()}: no installed plugin provides connector {instance.connector!r}; "
                f"use one of: {installed} (or install the plugin that provides it)"
            )
        reason = f"plugin {instance.connector!r} is disabled by HOOKPROXY_DISABLE_PLUGINS"
        self.skipped[instance.id] = reason
        log.info("skipping %s: %s", instance.where(), reason)

    def configured_backends(self) -> list[Backend]:
        """The backends the user configured (not the defaults plugins serve without configuration)."""
        return [backend for backend in self.backends.values() if not backend.instance.synthesized]

    def _register_frontend(self, frontend: Frontend) -> None:
        if not isinstance(frontend, Frontend):
            raise ConfigError(f"register_frontends: {frontend!r} is not a hookproxy.Frontend")
        claimed = {path: other for other in self.frontends for path in other.paths}
        for path in frontend.paths:
            if path in claimed:
                raise ConfigError(f"front ends {claimed[path].name!r} and {frontend.name!r} both claim POST {path}; "
                                  "disable one with HOOKPROXY_DISABLE_PLUGINS")
        self.frontends.append(frontend)
        self._judges.setdefault(frontend.protocol, frontend.started)

    def stream_judge(self, protocol: str) -> Judge:
        """How the start of a stream in ``protocol`` is checked (canonical chunks by default)."""
        return self._judges.get(protocol, openai_started)

    def routable_models(self) -> list[tuple[str, Backend, str]]:
        """``(routable id, backend, upstream model)`` for every model of every usable backend."""
        models: list[tuple[str, Backend, str]] = []
        for backend in self.backends.values():
            if not backend.health().usable:
                continue
            owner = self.display_name(backend)
            models.extend((f"{owner}:{model}", backend, model) for model in backend.models())
        return models

    def lookup(self, name: str) -> Backend:
        """A backend by id or alias; unknown names are a 400 listing the known ones."""
        backend_id = name if name in self.backends else self.aliases.get(name)
        if backend_id is None:
            known = ", ".join(sorted({*self.aliases, *self.backends})) or "none configured"
            raise UnknownBackend(f"unknown backend {name!r}; known backends: {known}", param="model")
        return self.backends[backend_id]

    def display_name(self, backend: Backend) -> str:
        """The shortest name that routes to ``backend`` (used in /v1/models ids)."""
        names = [alias for alias, target in self.aliases.items() if target == backend.id]
        return min(names, key=len) if names else backend.id

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self.transport is not None:
            return
        settings = self.settings
        ssl_context = make_ssl_context(settings.ca_bundle) if settings.ca_bundle else None
        aiohttp_transport = AiohttpTransport(ssl_context=ssl_context)
        self.transport = self._transport_override or aiohttp_transport
        self._http = httpx.AsyncClient(transport=self.transport, timeout=settings.timeout)
        if self._transport_override is not None:
            self.upstream = HttpxUpstream(self._transport_override)
        elif settings.upstream_client == "aiohttp":
            self.upstream = aiohttp_transport
        else:
            self.upstream = NativeUpstreamClient(ssl_context=ssl_context)
        await self.state.start()

    async def aclose(self) -> None:
        for backend in self.backends.values():
            await backend.aclose()
        if self.upstream is not None:
            await self.upstream.aclose()
            self.upstream = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        self.transport = None
        await self.state.aclose()

    @property
    def http(self) -> httpx.AsyncClient:
        """The shared client (for token endpoints and the like); exists once the app started."""
        if self._http is None:
            raise RuntimeError("the proxy has not been started")
        return self._http

    # --- calls -------------------------------------------------------------------------------

    async def complete(
        self, model: str, body: dict[str, Any], *, stream: bool, failover: bool = True
    ) -> Reply:
        """Serve the canonical ``body`` with the backend(s) named by the selector ``model``.

        This is the entry point for plugins that compose backends (the hybrid); with
        ``failover=False`` only the first candidate is tried and the core does not retry it
        (plugin retries still apply): the error goes back to the caller, whose own attempt loop
        decides within the request's budget. The reply is canonical (OpenAI chat completions).
        """
        routes = parse_chain(model)
        return await complete_with_failover(self, routes, body, stream=stream, failover=failover)

    def candidates(self, model: str) -> list[tuple[Backend, Route]]:
        """The backends a selector would try, in order (for endpoints such as token counting)."""
        return [(self.lookup(route.backend or ""), route) for route in expand_candidates(self, parse_chain(model))]

    async def send_upstream(self, backend: HTTPBackend, call: ChatCall) -> Reply:
        """One HTTP attempt, built and read through the steps of ``backend`` (see ``HTTPBackend``).

        What comes back is checked before it counts as a success: an error status becomes an
        ``UpstreamError`` with every credential redacted; a gzip or deflate body is decoded (any
        other encoding is a 502); a non-streamed body must be a JSON object no larger than
        ``max_response_bytes`` (else a 502 that fails over), whatever ``reply_protocol`` it is in.
        """
        if self.stopping:
            raise ShuttingDown("hookproxy is shutting down; retry on another instance")
        request = self._build_request(backend, call)
        prepare = self.hooks.caller("prepare_request", backend)
        if prepare is not None:
            await await_all(prepare(backend=backend, call=call, request=request))
        assert self.upstream is not None, "Proxy.start() was not awaited"
        try:
            response = await self.upstream.open(request.method, request.url, request.headers,
                                                orjson.dumps(request.json), request.timeout)
        except httpx.HTTPError as exc:
            raise _not_answered(backend, request, exc) from exc
        try:
            decoder = decoder_for(backend.id, response.headers)
        except UpstreamError:
            await response.aclose()
            raise
        if response.status >= 400:
            error = await _upstream_error(backend, response, decoder)
            raise self._redactor(backend, request).error(error)
        protocol = backend.reply_protocol(call)
        content_type = response.headers.get("content-type", "")
        if call.stream and content_type.startswith("text/event-stream"):
            settings = self.settings
            guard = StreamGuard(settings.stream_idle_timeout, settings.stream_max_lifetime, response.aclose)
            self._guards.add(guard)
            raw = _iterate(backend, response, guard)
            if decoder is not None:
                raw = decoder.stream(raw)
            chunks = backend.transform_stream(call, UpstreamStream(raw, backend.id)) or raw
            transform = self.hooks.caller("stream_response", backend)
            transformed = None if transform is None else transform(backend=backend, call=call,
                                                                    stream=UpstreamStream(chunks, backend.id))
            return Reply(
                status=response.status,
                headers={"content-type": "text/event-stream; charset=utf-8"},
                chunks=transformed if transformed is not None else chunks,
                close=response.aclose,
                protocol=protocol,
            )
        limit = self.settings.max_response_bytes
        declared = response.headers.get("content-length", "")
        try:
            if decoder is None and declared.isdigit() and int(declared) <= limit:
                # The length is known and within the cap: one read, no async generator per answer.
                try:
                    body = await response.read()
                except httpx.HTTPError as exc:
                    raise _broken(backend, exc) from exc
            else:
                body = await _read_body(backend, response, decoder, limit)
        finally:
            await response.aclose()
        parsed = _check_json(backend, response.status, content_type, body)
        transformed = backend.transform_body(call, body)
        return Reply(status=response.status, headers={"content-type": "application/json"}, body=transformed,
                     protocol=protocol, usage=usage_in(parsed), data=parsed if transformed is body else None)

    def _redactor(self, backend: HTTPBackend, request: UpstreamRequest) -> Redactor:
        return Redactor([*self.settings.api_keys, backend.api_key(), *credential_values(request.headers)])

    def end_streams(self) -> None:
        """Shutdown: end every upstream stream still running with one error event each, and take
        no new upstream request (called when the shutdown grace period is over)."""
        self.stopping = True
        running = [guard for guard in self._guards if not guard.fired]
        if running:
            log.warning("shutting down: ending %d stream%s still running after the %gs shutdown_grace_period",
                        len(running), "" if len(running) == 1 else "s", self.settings.shutdown_grace_period)
        for guard in running:
            guard.stop(SHUTDOWN_REASON)

    def _build_request(self, backend: HTTPBackend, call: ChatCall) -> UpstreamRequest:
        headers = {
            "content-type": "application/json",
            "accept": "text/event-stream" if call.stream else "application/json",
            "accept-encoding": "identity",
            LOOP_GUARD_HEADER: "1",
        }
        if call.request_id:
            headers[REQUEST_ID_HEADER] = call.request_id
        headers.update(backend.request_headers(call))
        return UpstreamRequest(
            method="POST",
            url=backend.base_url() + backend.request_path(call),
            headers=headers,
            json=backend.request_body(call),
            timeout=backend.timeout() or self.settings.timeout,
        )



def _not_answered(backend: Backend, request: UpstreamRequest, exc: httpx.HTTPError) -> UpstreamError:
    """A request that got no answer head: a timeout, or an unreachable backend (named by host)."""
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout(f"backend {backend.id!r} timed out: {exc}", backend=backend.id)
    host = request.url.split("/")[2] if "://" in request.url else request.url
    return UpstreamUnreachable(f"backend {backend.id!r} at {host} is unreachable: {exc}", backend=backend.id)


def _broken(backend: Backend, exc: httpx.HTTPError) -> UpstreamError:
    """An answer whose body did not arrive whole: it stopped (timeout) or broke."""
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout(f"backend {backend.id!r} stopped sending: {exc}", backend=backend.id)
    return UpstreamUnreachable(f"backend {backend.id!r} broke the stream: {exc}", backend=backend.id)


async def _iterate(
    backend: Backend, response: UpstreamResponse, guard: StreamGuard | None = None
) -> AsyncIterator[bytes]:
    """The upstream body; with a ``guard`` (streams), idle and lifetime limits end it with a 504."""
    try:
        async for chunk in response.chunks():
            if guard is not None:
                guard.reading = False
                yield chunk
                guard.read_started()
            else:
                yield chunk
    except httpx.HTTPError as exc:
        if guard is not None and guard.fired and not isinstance(exc, httpx.TimeoutException):
            raise _fired(backend, guard) from exc
        raise _broken(backend, exc) from exc
    finally:
        if guard is not None:
            guard.cancel()
    if guard is not None and guard.fired:
        raise _fired(backend, guard)


def _fired(backend: Backend, guard: StreamGuard) -> UpstreamError:
    if guard.fired == SHUTDOWN_REASON:
        return ShuttingDown(f"backend {backend.id!r}: {guard.fired}")
    return UpstreamTimeout(f"backend {backend.id!r}: {guard.fired}", backend=backend.id)


async def _read_all(
    backend: Backend, response: UpstreamResponse, limit: int, decoder: Decoder | None = None
) -> tuple[bytes, bool]:
    """The (decoded) body up to ``limit`` bytes, and whether there was more."""
    parts = []
    size = 0
    async for chunk in _iterate(backend, response):
        for piece in decoder.feed(chunk) if decoder is not None else (chunk,):
            parts.append(piece)
            size += len(piece)
            if size > limit:
                return b"".join(parts)[:limit], True
    if decoder is not None:
        parts.append(decoder.finish())
    body = b"".join(parts)
    return body[:limit], len(body) > limit


async def _read_body(backend: Backend, response: UpstreamResponse, decoder: Decoder | None, limit: int) -> bytes:
    """A success body that is encoded or of unknown or excessive length: read up to ``limit``
    bytes, refused (502, failing over at once) when it is longer."""
    declared = response.headers.get("content-length", "")
    too_large = decoder is None and declared.isdigit() and int(declared) > limit
    if not too_large:
        body, too_large = await _read_all(backend, response, limit, decoder)
    if too_large:
        error = UpstreamUnreachable(f"backend {backend.id!r} sent an answer over the {limit}-byte limit "
                                    "(max_response_bytes)", backend=backend.id)
        error.fail_over_at_once = True  # type: ignore[attr-defined]
        raise error
    return body


def _check_json(backend: Backend, status: int, content_type: str, body: bytes) -> dict[str, Any]:
    """A success must be a JSON object: an HTML page from a load balancer is a 502, not an answer.
    Returns the parsed object (its usage block is read from it: one parse per answer)."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        return parsed
    sample = body[:200].decode("utf-8", "replace").strip() or "an empty body"
    raise UpstreamUnreachable(
        f"backend {backend.id!r} answered HTTP {status} ({content_type or 'no content type'}) with something "
        f"that is not a JSON object: {sample!r}", backend=backend.id)


async def _upstream_error(backend: HTTPBackend, response: UpstreamResponse, decoder: Decoder | None) -> UpstreamError:
    """Read (at most a MiB of) an error answer and let the backend parse it."""
    try:
        raw, _more = await _read_all(backend, response, MAX_ERROR_BODY, decoder)
    except UpstreamError:
        raw = b""
    finally:
        await response.aclose()
    if not raw and response.reason:
        raw = response.reason.encode()
    return backend.parse_error(response.status, response.headers, raw)


def _aliases(backends: Mapping[str, Backend]) -> dict[str, str]:
    """Short names: ``<connector>`` when it has one instance, ``<name>`` when unique."""
    by_connector: dict[str, list[str]] = {}
    by_name: dict[str, list[str]] = {}
    for backend_id, backend in backends.items():
        by_connector.setdefault(backend.instance.connector, []).append(backend_id)
        by_name.setdefault(backend.instance.name, []).append(backend_id)
    aliases = {backend_id: backend_id for backend_id in backends}
    for name, ids in by_name.items():
        if len(ids) == 1 and name != "default" and name not in aliases:
            aliases[name] = ids[0]
    for connector, ids in by_connector.items():
        if len(ids) == 1 and connector not in aliases:
            aliases[connector] = ids[0]
    return aliases
