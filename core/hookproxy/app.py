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
from collections.abc import AsyncGenerator, Awaitable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .bruteforce import BruteForceGuard
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

    Repeated bad keys from one address are throttled by a :class:`BruteForceGuard`; its
    tables are empty until a bad key arrives, so good traffic pays one truth test and never
    waits on shared state; only a bad key's path awaits (counting it, maybe across hosts).
    """

    def __init__(self, keys: list[str], guard: BruteForceGuard | None = None) -> None:
        self._keys = [key.encode() for key in keys]
        self._ids = [key_id(key) for key in keys]
        self.guard = guard if guard is not None else BruteForceGuard()

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def check(self, head: RequestHead) -> Awaitable[None] | None:
        """``None`` for a good key (no I/O); for a bad one, an awaitable that counts it and raises."""
        if not self._keys:
            return None
        guard = self.guard
        if guard.active:
            guard.check(head.client)
        supplied = head.api_key
        authorization = head.authorization
        if supplied is None and authorization and authorization.startswith("Bearer "):
            supplied = authorization[7:].strip()
        if supplied is None and head.query_string:
            supplied = query_api_key(head.query_string)
        if supplied is not None:
            candidate = supplied.encode()
            matched = -1
            for index, key in enumerate(self._keys):  # every key is compared: no early exit to time
                if hmac.compare_digest(candidate, key):
                    matched = index
            if matched >= 0:
                head.key_id = self._ids[matched]
                if guard.active:
                    guard.success(head.client)
                return None
        return self._reject(head.client)

    async def _reject(self, client: str) -> None:
        await self.guard.failure(client)
        raise AuthenticationFailed(
            "invalid or missing proxy API key: send 'Authorization: Bearer <key>' (or x-api-key, x-goog-api-key, "
            "?api_key=) with a key from auth.api_keys, HOOKPROXY_API_KEYS or --api-key"
        )


def key_id(key: str) -> str:
    """A proxy key's name in usage reports and events: ``key-`` and 8 hex digits of its SHA-256.

    Stable across restarts and key order, and useless for guessing the key itself.
    """
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:8]


async def _check(auth: Authenticator, request: Request) -> None:
    rejected = auth.check(RequestHead(request.scope))
    if rejected is not None:
        await rejected


def create_app(proxy: Proxy) -> FastAPI:
    """Build the FastAPI app around a configured :class:`Proxy` (one per app)."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncGenerator[None, None]:
        await proxy.start()
        try:
            yield
        finally:
            await proxy.aclose()

    app = FastAPI(title="hookproxy", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.proxy = proxy
    auth = Authenticator(proxy.settings.api_keys if not proxy.settings.disable_auth else [],
                         BruteForceGuard(state=proxy.state))

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

    async def health(_request: Request) -> Response:
        shared = {"shared_state": {"url": proxy.state.where, "connected": proxy.state.up}} if proxy.state.shared else {}
        return _json({"status": "ok", **shared, "backends": _backend_states(proxy)})

    async def plugins(request: Request) -> Response:
        await _check(auth, request)
        return _json([info.__dict__ for info in list_plugins(proxy.pm)])

    # Front-end paths (POST /v1/chat/completions, ...) and their endpoints are answered by this middleware.
    app.add_middleware(FrontendMiddleware, proxy=proxy, authenticate=auth.check)
    for path in ("/v1/models", "/models"):
        app.add_api_route(path, list_models, methods=["GET"], include_in_schema=False)
        app.add_api_route(path + "/{model_id:path}", retrieve_model, methods=["GET"], include_in_schema=False)
    app.add_api_route("/health", health, methods=["GET"], include_in_schema=False)
    app.add_api_route("/-/plugins", plugins, methods=["GET"], include_in_schema=False)
    return app


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
