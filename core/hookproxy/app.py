"""The HTTP surface: ``/v1/chat/completions``, ``/v1/models``, ``/health``, ``/-/plugins``.

Errors are converted to OpenAI error bodies in exactly one place (``_proxy_error``); a stream
that already sent bytes ends with one error event instead (``_relay``). Handlers take the raw
Starlette request and parse the body with orjson themselves: the proxy must pass every field
through untouched, and schema validation of the whole body would cost time on every request.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

from .backend import Reply
from .bruteforce import BruteForceGuard
from .errors import (
    AuthenticationFailed,
    BodyTooLarge,
    InvalidRequest,
    LoopDetected,
    ProxyError,
)
from .failover import Attempts
from .plugins import list_plugins
from .proxy import LOOP_GUARD_HEADER, Proxy
from .routing import parse_chain
from .streaming import after_wait, relay

log = logging.getLogger("hookproxy")

JSON = "application/json"
EVENT_STREAM = "text/event-stream; charset=utf-8"
#: Headers of a stream committed before its backend was known (the backend is named in a comment).
_COMMITTED_HEADERS = {"cache-control": "no-cache", "x-hookproxy-failover": "waiting"}


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type=JSON, headers=headers)


class Authenticator:
    """Checks ``Authorization: Bearer <key>`` or ``x-api-key`` in constant time (A-1, A-2).

    Repeated bad keys from one address are throttled by a :class:`BruteForceGuard` (A-5); its
    table is empty until a bad key arrives, so good traffic pays one truth test.
    """

    def __init__(self, keys: list[str], guard: BruteForceGuard | None = None) -> None:
        self._keys = [key.encode() for key in keys]
        self.guard = guard if guard is not None else BruteForceGuard()

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def check(self, request: Request) -> None:
        if not self._keys:
            return
        guard = self.guard
        if guard.active:
            guard.check(_client(request))
        headers = request.headers
        supplied = headers.get("x-api-key")
        authorization = headers.get("authorization")
        if supplied is None and authorization and authorization.startswith("Bearer "):
            supplied = authorization[7:].strip()
        if supplied is not None:
            candidate = supplied.encode()
            matched = False
            for key in self._keys:
                matched |= hmac.compare_digest(candidate, key)
            if matched:
                if guard.active:
                    guard.success(_client(request))
                return
        guard.failure(_client(request))
        raise AuthenticationFailed(
            "invalid or missing proxy API key: send 'Authorization: Bearer <key>' with a key from auth.api_keys, "
            "HOOKPROXY_API_KEYS or --api-key"
        )


def _client(request: Request) -> str:
    client = request.client
    return client.host if client is not None else "unknown"


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
    auth = Authenticator(proxy.settings.api_keys if not proxy.settings.disable_auth else [])
    settings = proxy.settings
    max_body = settings.max_body_bytes

    @app.exception_handler(ProxyError)
    async def _proxy_error(_request: Request, exc: ProxyError) -> Response:
        return _json(exc.body(), exc.status, exc.headers)

    async def chat_completions(request: Request) -> Response:
        auth.check(request)
        if LOOP_GUARD_HEADER in request.headers:
            raise LoopDetected("request loop detected: this request already passed through a hookproxy")
        body = await _read_json(request, max_body)
        model, stream = _validate(body)
        attempts = Attempts.start(proxy, parse_chain(settings.force_model or model), body, stream=stream)
        step = await attempts.next()
        while not isinstance(step, Reply):
            if stream:
                # Commit the stream now so keep-alives can flow while we wait (F-3).
                return StreamingResponse(after_wait(attempts, step, settings.keepalive_interval),
                                         media_type=EVENT_STREAM, headers=_COMMITTED_HEADERS)
            await asyncio.sleep(step)
            step = await attempts.next()
        return _respond(step)

    async def list_models(request: Request) -> Response:
        auth.check(request)
        return _json({"object": "list", "data": _model_list(proxy)})

    async def health(_request: Request) -> Response:
        return _json({"status": "ok", "backends": _backend_states(proxy)})

    async def plugins(request: Request) -> Response:
        auth.check(request)
        return _json([info.__dict__ for info in list_plugins(proxy.pm)])

    for path in ("/v1/chat/completions", "/chat/completions"):
        app.add_api_route(path, chat_completions, methods=["POST"], include_in_schema=False)
    for path in ("/v1/models", "/models"):
        app.add_api_route(path, list_models, methods=["GET"], include_in_schema=False)
    app.add_api_route("/health", health, methods=["GET"], include_in_schema=False)
    app.add_api_route("/-/plugins", plugins, methods=["GET"], include_in_schema=False)
    return app


def _model_list(proxy: Proxy) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = []
    created = int(time.time())
    for backend in proxy.backends.values():
        if not backend.health().usable:
            continue
        owner = proxy.display_name(backend)
        data.extend(
            {"id": f"{owner}:{model}", "object": "model", "created": created, "owned_by": owner}
            for model in backend.models()
        )
    return data


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
    for backend_id, reason in proxy.skipped.items():
        backends[backend_id] = {"usable": False, "reason": reason}
    return backends


async def _read_json(request: Request, max_body: int) -> dict[str, Any]:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_body:
        raise BodyTooLarge(f"request body of {length} bytes is over the {max_body}-byte limit")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_body:
            raise BodyTooLarge(f"request body is over the {max_body}-byte limit")
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}", code="invalid_json") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object", code="invalid_json")
    return body


def _validate(body: dict[str, Any]) -> tuple[str, bool]:
    """The few checks the proxy needs itself; everything else is the upstream's business."""
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("'model' is required and must be a non-empty string", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' is required and must be a non-empty array", param="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise InvalidRequest(f"messages[{index}] must be an object with a string 'role'", param=f"messages.{index}")
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be a boolean", param="stream")
    return model, stream


def _reply_headers(reply: Reply) -> dict[str, str]:
    headers = {"x-hookproxy-backend": reply.backend, "x-hookproxy-model": reply.model}
    for name, value in reply.headers.items():
        if name.lower().startswith("x-hookproxy-"):
            headers[name] = value
    return headers


def _respond(reply: Reply) -> Response:
    headers = _reply_headers(reply)
    if reply.chunks is not None:
        return StreamingResponse(relay(reply), status_code=reply.status, media_type=EVENT_STREAM, headers=headers)
    content_type = reply.headers.get("content-type", JSON)
    if content_type.startswith(JSON) and "charset" not in content_type:
        content_type = JSON
    return Response(reply.body or b"", status_code=reply.status, media_type=content_type, headers=headers)
