"""The HTTP surface: every front end's paths, ``/v1/models``, ``/health``, ``/-/plugins``.

Front-end paths (``/v1/chat/completions`` and whatever plugins register) are served by
:mod:`hookproxy.endpoint` (a plain ASGI middleware in front of FastAPI, for speed); the other
routes are ordinary FastAPI routes. A ``ProxyError`` becomes an error body in the front end's
shape in ``endpoint.error_response``, and an OpenAI error body in ``_proxy_error`` here for the
rest; a stream that already sent bytes ends with one error event instead (``streaming.relay``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any
from urllib.parse import parse_qs

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .bruteforce import BruteForceGuard, SharedBruteForceGuard
from .endpoint import FrontendMiddleware, RequestHead
from .errors import AuthenticationFailed, ProxyError
from .plugins import list_plugins
from .proxy import Proxy

log = logging.getLogger("hookproxy")

JSON = "application/json"


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type=JSON, headers=headers)


def query_api_key(query_string: bytes) -> str | None:
    """The ``api_key`` query parameter (Gemini clients send the key that way), else ``None``.

    Parsed only when no header carried a key; the value is never logged.
    """
    if b"api_key=" not in query_string:
        return None
    values = parse_qs(query_string.decode("latin-1"), keep_blank_values=True).get("api_key")
    return values[-1] if values else None


class Authenticator:
    """Checks the proxy key in constant time: ``Authorization: Bearer <key>``, ``x-api-key``,
    ``x-goog-api-key`` or the ``api_key`` query parameter.

    Repeated bad keys from one address are throttled by a :class:`BruteForceGuard`. Only
    failures are throttled: a valid key always gets in, even from a blocked address (anyone
    behind the same NAT, or any local process, could otherwise lock every user out), and it
    does not clear the address's failures (else one busy user would let a neighbour guess on).
    """

    def __init__(self, keys: list[str], guard: BruteForceGuard | SharedBruteForceGuard | None = None) -> None:
        self._keys = [key.encode() for key in keys]
        self._ids = [key_id(key) for key in keys]
        self.guard = guard if guard is not None else BruteForceGuard()

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def check(self, head: RequestHead) -> Awaitable[None] | None:
        """``None`` for a good key (no I/O); a bad one raises, or (shared throttle) returns an
        awaitable that counts it across workers and hosts and then raises."""
        if not self._keys:
            return None
        supplied = supplied_key(head)
        if supplied is not None:
            candidate = supplied.encode()
            matched = -1
            for index, key in enumerate(self._keys):  # every key is compared: no early exit to time
                if hmac.compare_digest(candidate, key):
                    matched = index
            if matched >= 0:
                head.key_id = self._ids[matched]
                return None
        guard = self.guard
        guard.check(head.client)
        if isinstance(guard, SharedBruteForceGuard):
            return self._reject_shared(guard, head.client)
        guard.failure(head.client)
        raise _bad_key()

    async def _reject_shared(self, guard: SharedBruteForceGuard, client: str) -> None:
        await guard.failure(client)
        raise _bad_key()


def _bad_key() -> AuthenticationFailed:
    return AuthenticationFailed(
        "invalid or missing proxy API key: send 'Authorization: Bearer <key>' (or x-api-key, x-goog-api-key, "
        "?api_key=) with a key from auth.api_keys, HOOKPROXY_API_KEYS or --api-key"
    )


def supplied_key(head: RequestHead) -> str | None:
    """The proxy key a request carries (``x-api-key``, ``Authorization: Bearer``, ``?api_key=``)."""
    if head.api_key is not None:
        return head.api_key
    authorization = head.authorization
    if authorization and authorization.startswith("Bearer "):
        return authorization[7:].strip()
    if head.query_string:
        return query_api_key(head.query_string)
    return None


def key_id(key: str) -> str:
    """A proxy key's name in usage reports and events: ``key-`` and 8 hex digits of its SHA-256.

    Stable across restarts and key order, and useless for guessing the key itself.
    """
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:8]


async def _check(auth: Authenticator, request: Request) -> None:
    await _awaited(auth.check(RequestHead(request.scope)))


async def _awaited(rejected: Awaitable[None] | None) -> None:
    """Await a bad key's shared counting (see ``Authenticator.check``); nothing for a good key."""
    if rejected is not None:
        await rejected


class HookproxyApp(FrontendMiddleware):
    """The ASGI app uvicorn serves: the front-end pipeline first, FastAPI behind it.

    Why not a FastAPI middleware: FastAPI's ``__call__`` and Starlette's middleware stack cost
    about 5% of the CPU per request in the bench profile (FastAPI 0.165 also reads OpenTelemetry
    settings from the environment on every request), for nothing the front-end paths need.
    FastAPI keeps the rarely used routes (models, health, plugins) and the lifespan.
    """

    def __init__(self, fastapi: FastAPI, proxy: Proxy,
                 authenticate: Callable[[RequestHead], Awaitable[None] | None]) -> None:
        super().__init__(fastapi, proxy, authenticate)
        self.fastapi = fastapi
        self.state = fastapi.state


def _lifespan(
    proxy: Proxy, after_start: Callable[[], None] | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Start the proxy (its upstream clients), run ``after_start``, close it all at shutdown."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncGenerator[None, None]:
        await proxy.start()
        if after_start is not None:
            after_start()
        try:
            yield
        finally:
            await proxy.aclose()

    return lifespan


def create_app(proxy: Proxy, *, after_start: Callable[[], None] | None = None) -> HookproxyApp:
    """Build the app around a configured :class:`Proxy` (one per app).

    ``after_start`` runs inside the event loop once the proxy started (the CLI settles memory there).
    """
    app = FastAPI(title="hookproxy", lifespan=_lifespan(proxy, after_start), docs_url=None, redoc_url=None,
                  openapi_url=None)
    # No redirect built from request headers: ``GET /health/`` is a 404, not a 307 to the Host header.
    app.router.redirect_slashes = False
    app.state.proxy = proxy
    settings = proxy.settings
    guard = SharedBruteForceGuard(proxy.state) if proxy.state.shared else \
        BruteForceGuard(max_clients=settings.max_throttled_clients)
    auth = Authenticator(settings.api_keys if not settings.disable_auth else [], guard)

    @app.exception_handler(ProxyError)
    async def _proxy_error(_request: Request, exc: ProxyError) -> Response:
        return _json(exc.body(), exc.status, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """Unknown paths and wrong methods answer in the OpenAI error shape too."""
        error = ProxyError(f"{request.method} {request.url.path}: {exc.detail}", status=exc.status_code,
                           type="invalid_request_error", code="not_found" if exc.status_code == 404 else None)
        return _json(error.body(), exc.status_code, dict(exc.headers or {}))

    async def list_models(request: Request) -> Response:
        await _check(auth, request)
        return _json({"object": "list", "data": _model_list(proxy)})

    async def retrieve_model(request: Request) -> Response:
        await _check(auth, request)
        model_id = request.path_params["model_id"]
        for item in _model_list(proxy):
            if item["id"] == model_id:
                return _json(item)
        raise ProxyError(f"model {model_id!r} is not listed by any usable backend; GET /v1/models lists them",
                         status=404, type="invalid_request_error", param="model", code="model_not_found")

    async def health(request: Request) -> Response:
        """Up or not for anyone (load balancers, ``run_cli_proxy``); backend details (credential
        files, gates, token expiry) only with a valid key, or with auth off (loopback only)."""
        head = RequestHead(request.scope)
        if auth.enabled and supplied_key(head) is None:
            return _json({"status": "ok"})
        await _awaited(auth.check(head))
        shared = {"shared_state": {"url": proxy.state.where, "connected": proxy.state.up}} if proxy.state.shared else {}
        return _json({"status": "ok", **shared, "backends": _backend_states(proxy)})

    async def plugins(request: Request) -> Response:
        await _check(auth, request)
        return _json([info.__dict__ for info in list_plugins(proxy.pm)])

    for path in ("/v1/models", "/models"):
        app.add_api_route(path, list_models, methods=["GET"], include_in_schema=False)
        app.add_api_route(path + "/{model_id:path}", retrieve_model, methods=["GET"], include_in_schema=False)
    app.add_api_route("/health", health, methods=["GET"], include_in_schema=False)
    app.add_api_route("/-/plugins", plugins, methods=["GET"], include_in_schema=False)
    # Front-end paths (POST /v1/chat/completions, ...) and their endpoints are answered in front of it.
    return HookproxyApp(app, proxy, auth.check)


def _model_list(proxy: Proxy) -> list[dict[str, Any]]:
    created = int(time.time())
    return [{"id": model_id, "object": "model", "created": created, "owned_by": proxy.display_name(backend)}
            for model_id, backend, _model in proxy.routable_models()]


def _backend_states(proxy: Proxy) -> dict[str, dict[str, Any]]:
    backends: dict[str, dict[str, Any]] = {}
    for backend_id, backend in proxy.backends.items():
        state = backend.health()
        backends[backend_id] = {
            "connector": backend.instance.connector,
            "usable": state.usable,
            "reason": state.reason,
            **dict(state.details),
        }
        cooling = proxy.cooldowns.remaining(backend_id)
        if cooling > 0:
            backends[backend_id]["cooling_down_seconds"] = round(cooling, 1)
    for backend_id, reason in proxy.skipped.items():
        backends[backend_id] = {"usable": False, "reason": reason}
    return backends
