"""The ``anthropic`` connector: an upstream that speaks Anthropic Messages.

It keeps the core's HTTP pipeline (timeouts, stream guard, ``prepare_request``,
``on_rate_limit``, failover) and overrides only the steps that differ: the path (``/messages``),
the credentials (``x-api-key`` and ``anthropic-version``), the body, error parsing and the
answer's protocol.

Two ways through it:

* An Anthropic client (``call.client.protocol`` is Anthropic Messages): the client's own body goes
  out with only ``model`` rewritten (and the selector's ``temperature``/``top_p``/``top_k``
  parameters, which beat the body's as everywhere), so ``cache_control``, signed thinking blocks
  and fields this proxy does not know survive; ``anthropic-beta`` and ``anthropic-version`` are
  forwarded. The answer is relayed untouched. The one edit: thinking blocks without a
  signature (written by a translated backend earlier in the conversation) are dropped, since
  Anthropic rejects them.
* Everyone else (OpenAI chat clients, the hybrid): chat is translated to messages and back,
  streaming included.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from hookproxy import (
    OPENAI_CHAT,
    BackendInstance,
    ChatCall,
    Health,
    HTTPBackend,
    Proxy,
    ProxyError,
    UpstreamError,
    UpstreamStream,
    UpstreamUnreachable,
)
from hookproxy.upstream_errors import error_from_parts

from .from_messages import anthropic_error, chat_chunks, chat_completion
from .protocol import ANTHROPIC, DEFAULT_VERSION, loads
from .to_messages import MIN_BUDGET, to_messages

CONNECTOR = "anthropic"
#: The selector's URI parameters that mean the same in Anthropic's body.
NATIVE_PARAMS = ("temperature", "top_p", "top_k")
#: Fields Anthropic's count_tokens accepts (it refuses max_tokens, stream, metadata).
COUNT_FIELDS = ("model", "messages", "system", "tools", "tool_choice", "thinking")
#: Statuses that mean "this upstream has no count_tokens": the proxy estimates instead.
NO_COUNT_STATUSES = frozenset({404, 405, 501})


class AnthropicExtra(BaseModel):
    """The ``extra:`` block of an ``anthropic`` instance."""

    model_config = ConfigDict(extra="forbid")
    anthropic_version: str = Field(DEFAULT_VERSION, description="the anthropic-version header")
    headers: dict[str, str] = Field(default_factory=dict, description="fixed headers for every request")
    default_max_tokens: int = Field(8192, ge=1, description="max_tokens for chat clients that send none")


class AnthropicBackend(HTTPBackend):
    def __init__(self, instance: BackendInstance, extra: AnthropicExtra) -> None:
        super().__init__(instance)
        self.extra = extra
        cap = instance.max_output_tokens
        #: max_tokens for chat clients that send none, within the instance's max_output_tokens.
        self.default_max_tokens = extra.default_max_tokens if cap is None else min(extra.default_max_tokens, cap)

    def refusal(self) -> ProxyError | None:
        """Asked before every attempt: with a key (or none needed) and the api_url that start-up
        required, there is nothing to refuse, and no health report is built to say so."""
        if self.instance.api_key != "" and type(self) is AnthropicBackend:
            return None
        return super().refusal()

    def health(self) -> Health:
        if self.instance.api_key == "":
            return Health(False, f"api_key is empty for {self.instance.where()}; set its environment variable")
        return super().health()

    @staticmethod
    def native(call: ChatCall) -> bool:
        """Whether the client speaks Anthropic itself (then nothing is translated)."""
        client = call.client
        return client is not None and client.protocol == ANTHROPIC and client.native is not None

    def request_path(self, call: ChatCall) -> str:
        return "/messages"

    def request_headers(self, call: ChatCall) -> dict[str, str]:
        headers = {"anthropic-version": self.extra.anthropic_version, **self.extra.headers}
        key = self.api_key()
        if key:
            headers["x-api-key"] = key
        if self.native(call):
            assert call.client is not None
            headers.update(call.client.headers)
        return headers

    def request_body(self, call: ChatCall) -> dict[str, Any]:
        if not self.native(call):
            return to_messages(call.body, self.default_max_tokens)
        assert call.client is not None and call.client.native is not None
        body = dict(call.client.native)
        body["model"] = call.body["model"]
        body.update({key: call.route.params[key] for key in NATIVE_PARAMS if key in call.route.params})
        cap = self.instance.max_output_tokens
        if cap is not None:
            _cap_max_tokens(body, cap)
        messages = body.get("messages")
        if isinstance(messages, list) and any(_unsigned_thinking(message) for message in messages):
            body["messages"] = [_without_unsigned_thinking(message) for message in messages]
        return body

    def reply_protocol(self, call: ChatCall) -> str:
        return ANTHROPIC if self.native(call) else OPENAI_CHAT

    def parse_error(self, status: int, headers: Mapping[str, str], raw: bytes) -> UpstreamError:
        return anthropic_error(self.id, status, headers, raw)

    def transform_body(self, call: ChatCall, body: bytes) -> bytes:
        return body if self.native(call) else chat_completion(body)

    def transform_stream(self, call: ChatCall, stream: UpstreamStream) -> AsyncIterator[bytes] | None:
        return None if self.native(call) else chat_chunks(stream)

    async def count_tokens(self, proxy: Proxy, body: dict[str, Any], client_headers: Mapping[str, str]) -> int | None:
        """The upstream's exact count, or ``None`` when it offers no count_tokens endpoint."""
        headers = {"content-type": "application/json", "x-hookproxy-loop-guard": "1",
                   "anthropic-version": self.extra.anthropic_version,
                   **self.extra.headers, **{k: v for k, v in client_headers.items() if k.startswith("anthropic-")}}
        key = self.api_key()
        if key:
            headers["x-api-key"] = key
        payload = {field: body[field] for field in COUNT_FIELDS if field in body}
        try:
            response = await proxy.http.post(self.base_url() + "/messages/count_tokens", json=payload,
                                             headers=headers, timeout=self.timeout() or proxy.settings.timeout)
        except httpx.HTTPError as exc:
            raise UpstreamUnreachable(f"backend {self.id!r} is unreachable for count_tokens: {exc}",
                                      backend=self.id) from exc
        if response.status_code in NO_COUNT_STATUSES:
            return None
        if response.status_code >= 400:
            raise self.parse_error(response.status_code, response.headers, response.content)
        data = loads(response.content)
        if isinstance(data, dict) and isinstance(data.get("input_tokens"), int):
            return int(data["input_tokens"])
        raise error_from_parts(self.id, 502, response.headers, response.content,
                               message="count_tokens answered without input_tokens")


def _cap_max_tokens(body: dict[str, Any], cap: int) -> None:
    """Lower a client's ``max_tokens`` above the instance's ``max_output_tokens`` to it, in place.

    The core caps the canonical body; a native body is the client's own, so it is capped here.
    Anthropic wants a thinking budget below ``max_tokens`` and of at least 1024 tokens: a budget
    the cap leaves no room for is lowered, and thinking is turned off when not even the minimum
    fits (as for a translated request), rather than the upstream refusing the whole request.
    """
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens <= cap:
        return
    body["max_tokens"] = cap
    thinking = body.get("thinking")
    if not isinstance(thinking, dict):
        return
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or budget < cap:
        return
    if cap - 1 >= MIN_BUDGET:
        body["thinking"] = {**thinking, "budget_tokens": cap - 1}
    else:
        del body["thinking"]


def _unsigned_thinking(message: Any) -> bool:
    content = message.get("content") if isinstance(message, dict) else None
    return isinstance(content, list) and any(
        isinstance(block, dict) and block.get("type") == "thinking" and not block.get("signature")
        for block in content)


def _without_unsigned_thinking(message: Any) -> Any:
    if not _unsigned_thinking(message):
        return message
    content = [block for block in message["content"]
               if not (isinstance(block, dict) and block.get("type") == "thinking" and not block.get("signature"))]
    return {**message, "content": content}
