"""The ``POST /v1/responses`` front end: parse, render, and fail in the Responses shapes; with the
response store on, ``GET`` and ``DELETE /v1/responses/{id}`` for the responses it keeps."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any

import orjson

from hookproxy import (
    ClientRequest,
    Endpoint,
    Frontend,
    HTTPRequest,
    InvalidRequest,
    JSONAnswer,
    Proxy,
    ProxyError,
    Reply,
    UpstreamUnreachable,
)

from .events import StreamTranslator, failed
from .request import input_items, to_chat, validate
from .response import INCOMPLETE, STATE, ResponseState, echo_fields, output_from_message, usage_from_chat
from .settings import ResponsesSettings
from .store import ResponseStore
from .tools import ToolMap

log = logging.getLogger("hookproxy.responses")

PROTOCOL = "openai-responses"
STORE_OFF = ("'previous_response_id' needs the response store, which is off (hookproxy is stateless by default): "
             "start hookproxy with --responses-store (or HOOKPROXY_RESPONSES_STORE=true, or "
             "'backends: {responses_store: true}' in config.yaml), or send the whole conversation in 'input'")


class ResponsesFrontend(Frontend):
    """The OpenAI Responses API over any backend hookproxy routes to."""

    name = "responses"
    protocol = PROTOCOL
    paths = ("/v1/responses", "/responses")

    def __init__(self, settings: ResponsesSettings, store: ResponseStore | None = None) -> None:
        self.settings = settings
        self.store = store
        #: Saves started from synchronous code, referenced until they finish.
        self._saving: set[asyncio.Future[None]] = set()

    def endpoints(self) -> Sequence[Endpoint]:
        return [Endpoint(method, prefix, handler, prefix=True)
                for prefix in ("/v1/responses/", "/responses/")
                for method, handler in (("GET", self._retrieve), ("DELETE", self._delete))]

    # --- the request -------------------------------------------------------------------------

    def parse(self, request: HTTPRequest) -> ClientRequest | Awaitable[ClientRequest]:
        body = request.body
        assert body is not None
        model, stream = validate(body)
        previous = body.get("previous_response_id")
        if previous is None:
            return self._client(body, model, stream, [])
        if not isinstance(previous, str) or not previous:
            raise InvalidRequest("'previous_response_id' must be a non-empty string", param="previous_response_id")
        if self.store is None:
            raise InvalidRequest(STORE_OFF, param="previous_response_id", code="response_store_disabled")
        return self._continue(self.store, body, model, stream, previous)

    async def _continue(self, store: ResponseStore, body: dict[str, Any], model: str, stream: bool,
                        previous: str) -> ClientRequest:
        history = await store.load(previous)
        if history is None:
            raise InvalidRequest(f"Previous response with id {previous!r} not found (it was never stored, was stored "
                                 "with 'store': false, or is older than responses_store_max_age)",
                                 param="previous_response_id", code="previous_response_not_found")
        return self._client(body, model, stream, history)

    def _client(self, body: dict[str, Any], model: str, stream: bool,
                history: list[dict[str, Any]]) -> ClientRequest:
        items = [*history, *input_items(body)]
        names = ToolMap()
        chat = to_chat(body, items, names, model=model, stream=stream,
                       replay_reasoning=self.settings.responses_replay_reasoning)
        keep = self.store is not None and body.get("store") is not False
        state = ResponseState(model, names, echo_fields(body), items if keep else None)
        # usage_requested: a Responses stream always ends with usage, so the backend's usage chunk
        # must reach render_stream (the openai-compatible connector asks for it on every stream).
        return ClientRequest(self.name, PROTOCOL, model, stream, chat, native=body, usage_requested=stream,
                             state={STATE: state})

    # --- the answer --------------------------------------------------------------------------

    def render_body(self, body: bytes, client: ClientRequest) -> bytes:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise UpstreamUnreachable("the backend answered with a body that is not JSON") from None
        return self._render(data, client)

    def render_reply(self, reply: Reply, client: ClientRequest) -> bytes:
        """The answer the core already parsed, translated without parsing it again."""
        if reply.data is None:
            return self.render_body(reply.body or b"", client)
        return self._render(reply.data, client)

    def _render(self, data: Any, client: ClientRequest) -> bytes:
        state: ResponseState = client.state[STATE]
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise UpstreamUnreachable("the backend answered without any choice")
        message = choices[0].get("message")
        output = output_from_message(state, message if isinstance(message, dict) else {})
        incomplete = INCOMPLETE.get(choices[0].get("finish_reason") or "")
        response = state.response("incomplete" if incomplete else "completed", output,
                                  usage_from_chat(data.get("usage")), incomplete=incomplete)
        self._save_soon(state, output, response)
        return orjson.dumps(response)

    async def render_stream(self, chunks: AsyncIterator[bytes], client: ClientRequest) -> AsyncIterator[bytes]:
        state: ResponseState = client.state[STATE]
        translator = StreamTranslator(state)
        async for piece in translator.translate(chunks, self._save if state.history is not None else None):
            yield piece

    def error_event(self, error: ProxyError, client: ClientRequest | None) -> bytes:
        state = client.state.get(STATE) if client is not None else None
        if not isinstance(state, ResponseState):
            state = ResponseState(client.model if client else "", ToolMap(), {})
        return failed(state, error)

    # --- the store ---------------------------------------------------------------------------

    async def _save(self, state: ResponseState, output: list[dict[str, Any]], response: dict[str, Any]) -> None:
        if self.store is not None and state.history is not None:
            await self.store.save(state.id, [*state.history, *output], response)

    def _save_soon(self, state: ResponseState, output: list[dict[str, Any]], response: dict[str, Any]) -> None:
        """Save from synchronous code; the save runs before the loop reads the client's next request."""
        if self.store is None or state.history is None:
            return
        task = asyncio.ensure_future(self._save(state, output, response))
        self._saving.add(task)
        task.add_done_callback(self._saving.discard)

    # --- stored responses --------------------------------------------------------------------

    async def _retrieve(self, request: HTTPRequest, proxy: Proxy) -> JSONAnswer:
        """``GET /v1/responses/{id}``: the response as the client received it."""
        store, response_id = self._stored(request)
        response = await store.load_response(response_id)
        if response is None:
            raise _not_found(response_id)
        return JSONAnswer(response)

    async def _delete(self, request: HTTPRequest, proxy: Proxy) -> JSONAnswer:
        """``DELETE /v1/responses/{id}``: forget it (a later ``previous_response_id`` is a 400)."""
        store, response_id = self._stored(request)
        if not await store.delete(response_id):
            raise _not_found(response_id)
        return JSONAnswer({"id": response_id, "object": "response.deleted", "deleted": True})

    def _stored(self, request: HTTPRequest) -> tuple[ResponseStore, str]:
        response_id = request.path.split("/responses/", 1)[1]
        if "/" in response_id:  # such as /v1/responses/{id}/input_items
            raise ProxyError(f"{request.method} {request.path} is not served by hookproxy; GET /v1/responses/{{id}} "
                             "returns the whole response", status=404, type="invalid_request_error")
        if self.store is None:
            raise ProxyError(f"Response with id {response_id!r} not found: hookproxy keeps no responses unless "
                             "started with --responses-store (or HOOKPROXY_RESPONSES_STORE=true)", status=404,
                             type="invalid_request_error", code="response_store_disabled")
        return self.store, response_id


def _not_found(response_id: str) -> ProxyError:
    return ProxyError(f"Response with id {response_id!r} not found (it was never stored, was stored with "
                      "'store': false, was deleted, or is older than responses_store_max_age)", status=404,
                      type="invalid_request_error", code="response_not_found")
