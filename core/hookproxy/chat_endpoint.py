"""``POST /v1/chat/completions`` as a plain ASGI middleware in front of the FastAPI router.

Why not a FastAPI route: the bench profile (bench/RESULTS.md) charged about a quarter of the
proxy's CPU per request to the route layer (dependency solving, the Request object, exception
wrappers, per-request environment checks) on the one path where every microsecond counts. This
middleware answers that path itself and hands every other request to the app unchanged; errors
still become OpenAI bodies in one place (:func:`error_response`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from starlette.responses import StreamingResponse

from .backend import Reply
from .errors import BodyTooLarge, InvalidRequest, LoopDetected, ProxyError
from .failover import Attempts
from .proxy import LOOP_GUARD_HEADER, Proxy
from .routing import parse_chain
from .streamcheck import read_start
from .streaming import after_wait, completion_as_stream, relay

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("hookproxy")

CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
JSON_HEADER = (b"content-type", b"application/json")
EVENT_STREAM = "text/event-stream; charset=utf-8"
_LOOP_GUARD = LOOP_GUARD_HEADER.encode()
#: Headers of a stream committed before its backend was known (the backend is named in a comment).
_COMMITTED_HEADERS = {"cache-control": "no-cache", "x-hookproxy-failover": "waiting"}


async def send_json(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def error_response(send: Send, error: ProxyError) -> None:
    """The one place a ProxyError becomes an HTTP answer (OpenAI error body, status, headers)."""
    body = orjson.dumps(error.body())
    headers = [JSON_HEADER, (b"content-length", str(len(body)).encode())]
    headers.extend((k.lower().encode(), v.encode("latin-1", "replace")) for k, v in error.headers.items())
    await send_json(send, error.status, body, headers)


class RequestHead:
    """The few request headers the proxy reads, found in one pass over the raw ASGI list."""

    __slots__ = ("authorization", "api_key", "content_length", "loop_guard", "client")

    def __init__(self, scope: Scope) -> None:
        self.authorization: str | None = None
        self.api_key: str | None = None
        self.content_length: int | None = None
        self.loop_guard = False
        for name, value in scope["headers"]:
            if name == b"authorization":
                self.authorization = value.decode("latin-1")
            elif name == b"x-api-key":
                self.api_key = value.decode("latin-1")
            elif name == b"content-length" and value.isdigit():
                self.content_length = int(value)
            elif name == _LOOP_GUARD:
                self.loop_guard = True
        client = scope.get("client")
        self.client: str = client[0] if client else "unknown"


class ChatCompletionsMiddleware:
    """Serves the chat path directly; ``authenticate`` is the app's Authenticator."""

    def __init__(self, app: ASGIApp, proxy: Proxy,
                 authenticate: Callable[[RequestHead], Awaitable[None] | None]) -> None:
        self.app = app
        self.proxy = proxy
        self.authenticate = authenticate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in CHAT_PATHS:
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            await error_response(send, ProxyError(f"{scope['method']} {scope['path']}: Method Not Allowed; use POST",
                                                  status=405, type="invalid_request_error", headers={"Allow": "POST"}))
            return
        try:
            stream, attempts, step = await self._first_answer(scope, receive)
        except ProxyError as error:
            await error_response(send, error)
            return
        except Exception:  # noqa: BLE001 - a bug must still reach the client as an OpenAI error body
            log.exception("internal error while serving %s", scope["path"])
            await error_response(send, ProxyError("internal error in hookproxy; the proxy log has the details"))
            return
        if isinstance(step, Reply):
            await respond(step, scope, receive, send, stream=stream)
            return
        # A stream that must wait for a retry: commit it now so keep-alives can flow (F-3).
        response = StreamingResponse(after_wait(attempts, step, self.proxy.settings.keepalive_interval),
                                     media_type=EVENT_STREAM, headers=_COMMITTED_HEADERS)
        await response(scope, receive, send)

    async def _first_answer(self, scope: Scope, receive: Receive) -> tuple[bool, Attempts, Reply | float]:
        """Whether the client streams, its attempts, and a reply or (streams only) a wait."""
        proxy = self.proxy
        settings = proxy.settings
        head = RequestHead(scope)
        rejected = self.authenticate(head)  # None for a good key; a bad one is counted, then raises
        if rejected is not None:
            await rejected
        if head.loop_guard:
            raise LoopDetected("request loop detected: this request already passed through a hookproxy")
        body = await read_json(receive, head, settings.max_body_bytes)
        model, stream = validate(body)
        attempts = Attempts.start(proxy, parse_chain(settings.force_model or model), body, stream=stream)
        step = await attempts.next()
        while not isinstance(step, Reply) and not stream:
            await asyncio.sleep(step)
            step = await attempts.next()
        return stream, attempts, step


async def read_json(receive: Receive, head: RequestHead, max_body: int) -> dict[str, Any]:
    length = head.content_length
    if length is not None and length > max_body:
        raise BodyTooLarge(f"request body of {length} bytes is over the {max_body}-byte limit")
    message = await receive()
    raw = message.get("body", b"")
    if message.get("more_body"):
        chunks = [raw]
        size = len(raw)
        while message.get("more_body"):
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > max_body:
                raise BodyTooLarge(f"request body is over the {max_body}-byte limit")
            chunks.append(chunk)
        raw = b"".join(chunks)
    elif len(raw) > max_body:
        raise BodyTooLarge(f"request body is over the {max_body}-byte limit")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}", code="invalid_json") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object", code="invalid_json")
    return body


def validate(body: dict[str, Any]) -> tuple[str, bool]:
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


def reply_headers(reply: Reply) -> dict[str, str]:
    headers = {"x-hookproxy-backend": reply.backend, "x-hookproxy-model": reply.model}
    for name, value in reply.headers.items():
        if name.lower().startswith("x-hookproxy-"):
            headers[name] = value
    return headers


async def respond(reply: Reply, scope: Scope, receive: Receive, send: Send, *, stream: bool = False) -> None:
    headers = reply_headers(reply)
    if reply.chunks is not None:
        # Read to the first valid event (it comes with the first byte anyway), so a stream that is
        # empty, garbage or an error from its start is a 502 with a message, not an empty 200.
        try:
            head = await read_start(reply, need_output=False)
        except ProxyError as error:
            await error_response(send, error)
            return
        response = StreamingResponse(relay(reply, head), status_code=reply.status, media_type=EVENT_STREAM,
                                     headers=headers)
        await response(scope, receive, send)
        return
    body = reply.body or b""
    content_type = reply.headers.get("content-type", "application/json")
    if stream and reply.status < 300 and content_type.startswith("application/json"):
        body, content_type = completion_as_stream(body), EVENT_STREAM  # an upstream that ignored stream
    raw_headers = [(b"content-type", content_type.encode("latin-1")), (b"content-length", str(len(body)).encode())]
    raw_headers.extend((name.encode(), value.encode("latin-1", "replace")) for name, value in headers.items())
    await send_json(send, reply.status, body, raw_headers)
