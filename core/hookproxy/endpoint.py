"""The one request pipeline every front end goes through, as a plain ASGI middleware.

It sits in front of the FastAPI router and answers the paths front ends claim
(``Frontend.paths``: ``/v1/chat/completions``, ``/v1/messages``, ...) and their extra
endpoints; every other request goes to the app unchanged. Why not FastAPI routes: the bench
profile (bench/RESULTS.md) charged about a quarter of the proxy's CPU per request to the route
layer (dependency solving, the Request object, exception wrappers, per-request environment
checks) on the path where every microsecond counts.

For each request, in this order: proxy auth (and the brute-force throttle), the loop guard, the
body size limit and JSON parsing, ``Frontend.parse`` into the canonical call, routing and the
attempt loop (:mod:`hookproxy.failover`), then the answer through the front end
(:mod:`hookproxy.streaming`). A ``ProxyError`` becomes an HTTP answer in the front end's shape in
one place, :func:`error_response`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from typing import Any
from urllib.parse import quote

import orjson

from .backend import Reply
from .errors import BodyTooLarge, InvalidRequest, LoopDetected, ProxyError
from .failover import Attempts
from .frontend import OPENAI_CHAT, ClientRequest, Endpoint, Frontend, HTTPRequest
from .observe import REQUEST_ID, REQUEST_ID_HEADER, Trace, new_request_id, usage_in_body
from .proxy import LOOP_GUARD_HEADER, Proxy
from .routing import parse_chain
from .streamcheck import read_start
from .streaming import EVENT_STREAM, after_wait, as_stream, relay

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("hookproxy")

JSON_HEADER = (b"content-type", b"application/json")
_LOOP_GUARD = LOOP_GUARD_HEADER.encode()
_EVENT_STREAM = EVENT_STREAM.encode()
_REQUEST_ID = REQUEST_ID_HEADER.encode()
#: Milliseconds the proxy itself spent on a request (upstream time and retry waits excluded).
OVERHEAD_HEADER = "x-hookproxy-overhead-ms"
_OVERHEAD = OVERHEAD_HEADER.encode()
#: Headers of a stream committed before its backend was known (the backend is named in a comment).
_COMMITTED_HEADERS = {"cache-control": "no-cache", "x-hookproxy-failover": "waiting"}


async def send_json(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def error_response(
    send: Send, error: ProxyError, frontend: Frontend | None = None, request_id: str | None = None
) -> int:
    """The one place a ProxyError becomes an HTTP answer (the front end's error body and status);
    returns the status sent."""
    if frontend is None:
        status, body = error.status, orjson.dumps(error.body())
    else:
        status, body = frontend.error_status(error), orjson.dumps(frontend.error_body(error))
    headers = [JSON_HEADER, (b"content-length", str(len(body)).encode())]
    if request_id is not None:
        headers.append((_REQUEST_ID, header_value(request_id)))
    headers.extend((k.lower().encode(), header_value(v)) for k, v in error.headers.items())
    await send_json(send, status, body, headers)
    return status


#: Printable ASCII but ``%``: kept as is in a header value; everything else is percent-encoded.
_HEADER_SAFE = "".join(chr(code) for code in range(0x20, 0x7F) if chr(code) != "%")
#: Control characters (C0, DEL, C1): never part of a model or backend name.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
#: The deepest JSON the proxy can re-encode (orjson's limit); a deeper body is refused with a 400.
MAX_JSON_DEPTH = 254


def header_value(value: str) -> bytes:
    """``value`` as a response header value that is valid for any text: names in headers come
    from clients and configuration, and may hold any character (UTF-8 is percent-encoded)."""
    if value.isascii() and value.isprintable():
        return value.encode()
    return quote(value, safe=_HEADER_SAFE).encode()


#: ``header_value`` of backend and model names seen lately (a few names serve most requests).
_KNOWN_VALUES: dict[str, bytes] = {}
_KNOWN_VALUES_KEPT = 1024


def known_header_value(value: str) -> bytes:
    """``header_value(value)``, remembered: the names of backends and models repeat."""
    encoded = _KNOWN_VALUES.get(value)
    if encoded is None:
        encoded = header_value(value)
        if len(_KNOWN_VALUES) >= _KNOWN_VALUES_KEPT:
            _KNOWN_VALUES.clear()
        _KNOWN_VALUES[value] = encoded
    return encoded


def check_model(model: str) -> None:
    """Refuse a selector with control characters (CR, LF, NUL, ...) before any upstream I/O."""
    match = _CONTROL.search(model)
    if match is not None:
        raise InvalidRequest(f"'model' contains the control character {match.group()!r} at position "
                             f"{match.start()}; model and backend names are plain text", param="model",
                             code="invalid_model")


async def send_stream(receive: Receive, send: Send, status: int, headers: Mapping[str, str],
                      chunks: AsyncIterator[bytes]) -> None:
    """A streamed answer, written straight to ASGI; a client that leaves ends it at once.

    Why not Starlette's StreamingResponse: it opens an anyio task group per stream (uvicorn
    speaks ASGI spec 2.3), a cost paid at the start of every stream, where it delays the first
    byte. Here one small task watches ``receive()`` and cancels the relay when the client
    disconnects, so ``chunks`` is closed (and with it the upstream connection) without waiting
    for the next chunk.
    """
    raw_headers = [(b"content-type", _EVENT_STREAM)]
    raw_headers.extend((name.lower().encode("latin-1"), header_value(value)) for name, value in headers.items())
    relay_task = asyncio.current_task()
    assert relay_task is not None
    watcher = asyncio.ensure_future(_cancel_on_disconnect(receive, relay_task))
    try:
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        async for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except asyncio.CancelledError:
        if not (watcher.done() and not watcher.cancelled() and watcher.result()):
            raise  # cancelled from outside (shutdown), not by the client leaving
        relay_task.uncancel()
    finally:
        watcher.cancel()
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


async def _cancel_on_disconnect(receive: Receive, task: asyncio.Task[Any]) -> bool:
    while (await receive())["type"] != "http.disconnect":
        pass
    task.cancel()
    return True


def internal_error() -> ProxyError:
    return ProxyError("internal error in hookproxy; the proxy log has the details")


#: The request headers :class:`RequestHead` reads, by raw name (one lookup per header).
_WANTED_HEADERS = {b"authorization": "authorization", b"x-api-key": "api_key", b"x-goog-api-key": "api_key",
                   b"content-length": "content_length", _LOOP_GUARD: "loop_guard", b"x-request-id": "request_id"}


class RequestHead:
    """The few request headers the proxy reads, found in one pass over the raw ASGI list."""

    __slots__ = ("scope", "authorization", "api_key", "content_length", "loop_guard", "client", "request_id",
                 "key_id", "query_string")

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.authorization: str | None = None
        self.api_key: str | None = None
        self.content_length: int | None = None
        self.loop_guard = False
        self.request_id: str | None = None
        #: Set by the Authenticator to the id of the proxy key that matched.
        self.key_id: str | None = None
        for name, value in scope["headers"]:
            wanted = _WANTED_HEADERS.get(name)
            if wanted is None:
                continue
            if wanted == "authorization":
                self.authorization = value.decode("latin-1")
            elif wanted == "api_key":  # x-api-key, or x-goog-api-key from Gemini clients
                self.api_key = value.decode("latin-1")
            elif wanted == "content_length":
                if value.isdigit():
                    self.content_length = int(value)
            elif wanted == "loop_guard":
                self.loop_guard = True
            else:
                self.request_id = value.decode("latin-1")
        client = scope.get("client")
        self.client: str = client[0] if client else "unknown"
        #: Raw, undecoded: only the key check reads it (``?api_key=``), and it is never logged.
        self.query_string: bytes = scope.get("query_string", b"")


class FrontendMiddleware:
    """Serves every front end's paths and endpoints; ``authenticate`` is the app's Authenticator."""

    def __init__(self, app: ASGIApp, proxy: Proxy,
                 authenticate: Callable[[RequestHead], Awaitable[None] | None]) -> None:
        self.app = app
        self.proxy = proxy
        self.authenticate = authenticate
        self.paths: dict[str, Frontend] = {path: frontend for frontend in proxy.frontends for path in frontend.paths}
        self.endpoints: dict[tuple[str, str], list[tuple[Endpoint, Frontend]]] = {}
        #: ``prefix`` endpoints, looked at only for a path no exact endpoint or front end serves.
        self.prefix_endpoints: list[tuple[Endpoint, Frontend]] = []
        for frontend in proxy.frontends:
            for endpoint in frontend.endpoints():
                if endpoint.prefix:
                    self.prefix_endpoints.append((endpoint, frontend))
                else:
                    key = (endpoint.method.upper(), endpoint.path)
                    self.endpoints.setdefault(key, []).append((endpoint, frontend))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        frontend = self.paths.get(scope["path"])
        if frontend is not None:
            if scope["method"] == "POST":
                await self._serve(frontend, scope, receive, send)
            else:
                await error_response(send, ProxyError(
                    f"{scope['method']} {scope['path']}: Method Not Allowed; use POST", status=405,
                    type="invalid_request_error", headers={"Allow": "POST"}), frontend)
            return
        request_id = new_request_id(_header(scope, b"x-request-id"))
        token = REQUEST_ID.set(request_id)
        send = _with_request_id(send, request_id)
        try:
            candidates = self.endpoints.get((scope["method"], scope["path"]))
            if candidates is None and self.prefix_endpoints:
                candidates = self._under_prefix(scope["method"], scope["path"])
            if not candidates or not await self._endpoint(candidates, scope, receive, send):
                await self.app(scope, receive, send)
        finally:
            REQUEST_ID.reset(token)

    # --- the proxy path --------------------------------------------------------------------

    async def _serve(self, frontend: Frontend, scope: Scope, receive: Receive, send: Send) -> None:
        head = RequestHead(scope)
        request_id = new_request_id(head.request_id)
        token = REQUEST_ID.set(request_id)  # every log line about this request carries its id
        trace = Trace(self.proxy.observers, request_id, frontend.name, scope["path"])
        try:
            try:
                client, attempts, step = await self._first_answer(frontend, head, trace, receive)
            except ProxyError as error:
                await _fail(send, error, frontend, trace)
                return
            except Exception:  # noqa: BLE001 - a bug must still reach the client as an error body
                log.exception("internal error while serving %s", scope["path"])
                await _fail(send, internal_error(), frontend, trace)
                return
            if isinstance(step, Reply):
                await respond(self.proxy, frontend, client, step, trace, scope, receive, send)
                return
            # A stream that must wait longer than a keep-alive interval: commit it now so keep-alives flow.
            await send_stream(receive, send, 200, {**_COMMITTED_HEADERS, REQUEST_ID_HEADER: trace.request_id},
                              after_wait(frontend, client, attempts, step, self.proxy.settings.keepalive_interval,
                                         trace))
        finally:
            REQUEST_ID.reset(token)

    async def _first_answer(
        self, frontend: Frontend, head: RequestHead, trace: Trace, receive: Receive
    ) -> tuple[ClientRequest, Attempts, Reply | float]:
        """The parsed request, its attempts, and a reply or (streams only) a long wait.

        Waits no longer than ``keepalive_interval`` pass silently, streaming or not, so a short
        retry never commits a stream: an error after it keeps its HTTP status and Retry-After.
        """
        proxy = self.proxy
        settings = proxy.settings
        rejected = self.authenticate(head)  # None for a good key; a bad one is counted, then raises
        if rejected is not None:
            await rejected
        trace.key_id = head.key_id
        if head.loop_guard:
            raise LoopDetected("request loop detected: this request already passed through a hookproxy")
        body = await read_json(receive, head, settings.max_body_bytes)
        parsed = frontend.parse(HTTPRequest(head.scope, body))
        client = parsed if isinstance(parsed, ClientRequest) else await parsed
        check_model(client.model)
        client.request_id = trace.request_id
        trace.stream = client.stream
        attempts = Attempts.start(proxy, parse_chain(settings.force_model or client.model), client.body,
                                  stream=client.stream, client=client, trace=trace)
        step = await attempts.next()
        interval = settings.keepalive_interval
        while not isinstance(step, Reply) and (not client.stream or step <= interval):
            trace.waits += step
            await asyncio.sleep(step)
            step = await attempts.next()
        return client, attempts, step

    # --- extra endpoints -------------------------------------------------------------------

    def _under_prefix(self, method: str, path: str) -> list[tuple[Endpoint, Frontend]]:
        """The ``prefix`` endpoints whose path ``path`` extends (by at least one character)."""
        return [(endpoint, frontend) for endpoint, frontend in self.prefix_endpoints
                if endpoint.method.upper() == method and len(path) > len(endpoint.path)
                and path.startswith(endpoint.path)]

    async def _endpoint(
        self, candidates: list[tuple[Endpoint, Frontend]], scope: Scope, receive: Receive, send: Send
    ) -> bool:
        """Serve the first endpoint whose ``when`` accepts the request; False when none does."""
        request = HTTPRequest(scope)
        match = next(((endpoint, frontend) for endpoint, frontend in candidates
                      if endpoint.when is None or endpoint.when(request)), None)
        if match is None:
            return False
        endpoint, frontend = match
        try:
            head = RequestHead(scope)
            if not endpoint.public and (rejected := self.authenticate(head)) is not None:
                await rejected
            if endpoint.json_body:
                request.body = await read_json(receive, head, self.proxy.settings.max_body_bytes)
            answer = await endpoint.handler(request, self.proxy)
        except ProxyError as error:
            await error_response(send, error, frontend)
            return True
        except Exception:  # noqa: BLE001 - a bug must still reach the client as an error body
            log.exception("internal error while serving %s %s", scope["method"], scope["path"])
            await error_response(send, internal_error(), frontend)
            return True
        if answer.raw is not None:
            body = answer.raw
        else:
            body = b"" if answer.data is None else orjson.dumps(answer.data)
        headers = [(b"content-type", header_value(answer.content_type)),
                   (b"content-length", str(len(body)).encode())]
        headers.extend((k.lower().encode(), header_value(v)) for k, v in answer.headers.items())
        await send_json(send, answer.status, b"" if scope["method"] == "HEAD" else body, headers)
        return True


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _with_request_id(send: Send, request_id: str) -> Send:
    """``send`` that adds ``x-request-id`` to the answer (for the routes behind this middleware)."""
    value = request_id.encode()

    async def sender(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), (_REQUEST_ID, value)]
        await send(message)

    return sender


async def _fail(send: Send, error: ProxyError, frontend: Frontend, trace: Trace) -> None:
    trace.error = error.code or error.type
    trace.end(await error_response(send, error, frontend, trace.request_id))


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
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH:  # cheap: only bodies that could be that deep
        try:
            orjson.dumps(body)
        except orjson.JSONEncodeError:
            raise InvalidRequest(f"request body is nested deeper than {MAX_JSON_DEPTH} levels",
                                 code="invalid_json") from None
    return body


def reply_headers(reply: Reply, trace: Trace) -> dict[str, str]:
    headers = {"x-hookproxy-backend": reply.backend, "x-hookproxy-model": reply.model,
               REQUEST_ID_HEADER: trace.request_id, OVERHEAD_HEADER: f"{trace.overhead() * 1000:.2f}"}
    for name, value in reply.headers.items():
        if name.lower().startswith("x-hookproxy-"):
            headers[name] = value
    return headers


async def respond(
    proxy: Proxy, frontend: Frontend, client: ClientRequest, reply: Reply, trace: Trace,
    scope: Scope, receive: Receive, send: Send,
) -> None:
    """Answer with ``reply``: relayed untouched in the front end's own protocol, else rendered."""
    if reply.chunks is None and client.stream and reply.protocol == OPENAI_CHAT:
        as_stream(reply)  # an upstream that ignored stream: true
    if reply.chunks is not None:
        # Read to the first valid event (it comes with the first byte anyway), so a stream that is
        # empty, garbage or an error from its start is a 502 with a message, not an empty 200.
        try:
            head = await read_start(reply, need_output=False, judge=proxy.stream_judge(reply.protocol))
        except ProxyError as error:
            await _fail(send, error, frontend, trace)
            return
        try:
            await send_stream(receive, send, reply.status, reply_headers(reply, trace),
                              relay(frontend, client, reply, head, trace))
        finally:
            await reply.aclose()  # whatever happened after the upstream answered, release it
        return
    body = reply.body or b""
    if proxy.observers.request:
        trace.add_usage(reply.usage if reply.usage is not None else usage_in_body(body))
    content_type = reply.headers.get("content-type", "application/json")
    if reply.protocol != frontend.protocol:
        try:
            body = frontend.render_reply(reply, client)
        except ProxyError as error:
            await _fail(send, error, frontend, trace)
            return
        content_type = "application/json"
    type_header = JSON_HEADER if content_type == "application/json" else (b"content-type", header_value(content_type))
    raw_headers = [type_header, (b"content-length", b"%d" % len(body))]
    extra = reply.headers
    if (len(extra) > 1 or "content-type" not in extra) and any(
            name.lower().startswith("x-hookproxy-") for name in extra):  # a plugin's own
        raw_headers.extend((name.encode(), header_value(value)) for name, value in reply_headers(reply, trace).items())
    else:
        raw_headers += ((b"x-hookproxy-backend", known_header_value(reply.backend)),
                        (b"x-hookproxy-model", known_header_value(reply.model)),
                        (_REQUEST_ID, trace.request_id.encode()),  # a safe token (new_request_id)
                        (_OVERHEAD, b"%.2f" % (trace.overhead() * 1000)))
    trace.first_byte = trace.elapsed()
    await send({"type": "http.response.start", "status": reply.status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})
    trace.end(reply.status)
