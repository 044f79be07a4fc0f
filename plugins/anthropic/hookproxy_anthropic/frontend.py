"""The Anthropic Messages front end: ``POST /v1/messages`` and the routes Anthropic clients call.

Claude Code sends ``HEAD /`` (a warm-up), then ``POST /v1/messages?beta=true`` per turn;
interactive sessions also call ``POST /v1/messages/count_tokens``. ``GET /v1/models`` and
``GET /v1/models/{id}`` answer in Anthropic's shape when the request carries ``anthropic-version``
(the core's OpenAI ones otherwise). The core does auth, routing, failover and streaming; this module only translates.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from hookproxy import (
    BadStream,
    ClientRequest,
    Endpoint,
    Frontend,
    HTTPRequest,
    InvalidRequest,
    JSONAnswer,
    Proxy,
    ProxyError,
    Reply,
    SSEEvent,
)

from .connector import AnthropicBackend
from .from_chat import message_from_chat, render_events, render_message
from .protocol import ANTHROPIC, PING, client_status, error_document, event, loads
from .to_chat import to_chat
from .tokens import count_tokens
from .toolnames import shorten

#: Request headers a native Anthropic backend receives as the client sent them.
FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta")
#: Their raw (ASGI) names; neither is a secret the core keeps from front ends.
_FORWARDED_RAW = {name.encode("latin-1"): name for name in FORWARDED_HEADERS}
#: Selectors whose backends' protocol is remembered (clients may send any model string).
_SELECTORS_KEPT = 1024


class MessagesFrontend(Frontend):
    name = "anthropic"
    protocol = ANTHROPIC
    paths = ("/v1/messages",)
    keepalive = PING

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        #: ``_only_native`` by selector: the candidates of a selector follow from the configuration.
        self._native: dict[str, bool] = {}

    def endpoints(self) -> Sequence[Endpoint]:
        return (
            Endpoint("POST", "/v1/messages/count_tokens", _count_tokens, json_body=True),
            Endpoint("GET", "/v1/models", _models, when=_anthropic_client),
            Endpoint("GET", MODEL_PREFIX, _model, when=_anthropic_client, prefix=True),
            Endpoint("HEAD", "/", _warm_up, public=True),
        )

    def parse(self, request: HTTPRequest) -> ClientRequest:
        body = request.body
        assert body is not None
        model, stream = validate(body)
        if self._only_native(model):
            # Every backend the selector may reach reads `native` (relayed with only the model
            # rewritten): no chat translation is built, and a block with no chat equivalent
            # (such as `document`) passes through.
            chat: dict[str, Any] = {"model": model, "messages": [], "stream": stream}
        else:
            chat = to_chat(body, stream=stream)
        headers = forwarded_headers(request)
        stops = [stop for stop in body.get("stop_sequences") or [] if isinstance(stop, str)]
        return ClientRequest(self.name, ANTHROPIC, model, stream, chat, native=body, headers=headers,
                             state={"stops": stops, "tool_names": shorten(chat)})

    def _only_native(self, model: str) -> bool:
        """Whether every backend the selector may reach speaks Anthropic itself (then a block that
        has no chat equivalent, such as ``document``, passes through)."""
        selector = self.proxy.settings.force_model or model
        known = self._native.get(selector)
        if known is not None:
            return known
        try:
            candidates = self.proxy.candidates(selector)
        except ProxyError:
            return False
        native = all(isinstance(backend, AnthropicBackend) for backend, _route in candidates)
        if len(self._native) < _SELECTORS_KEPT:
            self._native[selector] = native
        return native

    def render_body(self, body: bytes, client: ClientRequest) -> bytes:
        state = client.state
        return orjson.dumps(render_message(body, client.model, state.get("stops", []), state.get("tool_names")))

    def render_reply(self, reply: Reply, client: ClientRequest) -> bytes:
        """The answer the core already parsed, translated without parsing it again."""
        if reply.data is None:
            return self.render_body(reply.body or b"", client)
        state = client.state
        return orjson.dumps(message_from_chat(reply.data, client.model, state.get("stops", []),
                                              state.get("tool_names")))

    def render_stream(self, chunks: AsyncIterator[bytes], client: ClientRequest) -> AsyncIterator[bytes]:
        state = client.state
        return render_events(chunks, client.model, state.get("stops", []), state.get("tool_names"))

    def error_status(self, error: ProxyError) -> int:
        return client_status(error.status)

    def error_body(self, error: ProxyError) -> dict[str, Any]:
        return error_document(error.status, error.message)

    def error_event(self, error: ProxyError, client: ClientRequest | None) -> bytes:
        return event("error", {"error": error_document(error.status, error.message)["error"]})

    def started(self, event: SSEEvent, backend: str, need_output: bool) -> bool:
        return anthropic_started(event, backend, need_output)


def forwarded_headers(request: HTTPRequest) -> dict[str, str]:
    """The ``FORWARDED_HEADERS`` the client sent (the first of each, in that order).

    One pass over the raw header list instead of one ``request.header`` scan per name: this runs
    for every request, and clients send a dozen or more headers."""
    found: dict[str, str] = {}
    for raw, value in request.scope.get("headers", ()):
        name = _FORWARDED_RAW.get(raw)
        if name is not None and name not in found:
            found[name] = value.decode("latin-1")
    if len(found) > 1:
        return {name: found[name] for name in FORWARDED_HEADERS if name in found}
    return found


def validate(body: dict[str, Any]) -> tuple[str, bool]:
    """The fields Anthropic requires, checked as Anthropic does (400 naming the field)."""
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("model: Field required (a non-empty string)", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages: Field required (a non-empty list)", param="messages")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise InvalidRequest("max_tokens: Field required (an integer of at least 1)", param="max_tokens")
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise InvalidRequest("stream: Input should be a valid boolean", param="stream")
    stops = body.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)):
        raise InvalidRequest("stop_sequences: Input should be a list of strings", param="stop_sequences")
    return model, stream


#: Anthropic events that carry output (or end the turn) at the start of a stream.
_OUTPUT_DELTAS = ("text", "thinking", "partial_json")


def anthropic_started(item: SSEEvent, backend: str, need_output: bool) -> bool:
    """The stream start check for Anthropic events (the core's ``Frontend.started`` contract)."""
    if item.data is None:
        if item.comments:
            return False
        raise BadStream(f"backend {backend!r} sent a malformed SSE event before any output", backend=backend)
    payload = loads(item.data)
    if not isinstance(payload, dict):
        raise BadStream(f"backend {backend!r} sent malformed SSE data: {item.data[:200]!r}", backend=backend)
    kind = payload.get("type") or item.event
    if kind == "error":
        detail = payload.get("error")
        message = detail.get("message") if isinstance(detail, dict) else detail
        raise BadStream(f"backend {backend!r} streamed an error before any output: {message}", backend=backend)
    if kind == "message_stop":
        raise BadStream(f"backend {backend!r} ended its stream without any content", backend=backend)
    if not need_output:
        return kind != "ping"
    if kind == "content_block_start":
        block = payload.get("content_block")
        return isinstance(block, dict) and block.get("type") not in ("text", "thinking")
    if kind == "content_block_delta":
        delta = payload.get("delta")
        return isinstance(delta, dict) and any(delta.get(key) for key in _OUTPUT_DELTAS)
    return kind == "message_delta"


async def _count_tokens(request: HTTPRequest, proxy: Proxy) -> JSONAnswer:
    body = request.body
    assert body is not None
    return JSONAnswer(await count_tokens(proxy, body, dict(request.headers)))


#: ``GET /v1/models/{id}``: the model id is the rest of the path.
MODEL_PREFIX = "/v1/models/"
#: A model's ``created_at``: routable ids have no release date, so the epoch stands in.
CREATED_AT = datetime.fromtimestamp(0, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _anthropic_client(request: HTTPRequest) -> bool:
    """Anthropic's SDKs and Claude Code send ``anthropic-version`` on every request; OpenAI's never do."""
    return "anthropic-version" in request.headers


def _model_object(model_id: str) -> dict[str, Any]:
    return {"type": "model", "id": model_id, "display_name": model_id, "created_at": CREATED_AT}


async def _models(request: HTTPRequest, proxy: Proxy) -> JSONAnswer:
    data = [_model_object(model_id) for model_id, _backend, _model in proxy.routable_models()]
    return JSONAnswer({"data": data, "has_more": False, "first_id": data[0]["id"] if data else None,
                       "last_id": data[-1]["id"] if data else None})


async def _model(request: HTTPRequest, proxy: Proxy) -> JSONAnswer:
    model_id = request.path[len(MODEL_PREFIX):]
    if any(model_id == listed for listed, _backend, _model in proxy.routable_models()):
        return JSONAnswer(_model_object(model_id))
    raise ProxyError(f"model {model_id!r} is not listed by any usable backend; GET /v1/models lists them",
                     status=404, type="invalid_request_error", param="model", code="model_not_found")


async def _warm_up(request: HTTPRequest, proxy: Proxy) -> JSONAnswer:
    return JSONAnswer(None)
