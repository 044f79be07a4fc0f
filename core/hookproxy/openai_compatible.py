"""The built-in ``openai-compatible`` connector: any API that speaks OpenAI chat completions.

It is registered through the core's own ``hookproxy`` entry point, exactly like a third-party
plugin, and doubles as the smallest example of one. Instance keys: ``api_url`` (required),
``api_key`` (sent as ``Authorization: Bearer``), ``models``, ``timeout``, ``max_output_tokens``
(applied by the core); ``extra.headers`` adds fixed headers to every upstream request;
``extra.stream_usage: false`` stops the proxy from asking for the usage chunk on streams (it
keeps that chunk from clients that did not ask).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .backend import BackendInstance, ChatCall, Health, HTTPBackend
from .config import validate_extra
from .errors import ConfigError, ProxyError
from .hookspecs import hookimpl

CONNECTOR = "openai-compatible"


class OpenAICompatibleExtra(BaseModel):
    """The ``extra:`` block of an openai-compatible instance."""

    model_config = ConfigDict(extra="forbid")
    headers: dict[str, str] = Field(default_factory=dict)
    #: Ask for the usage chunk on streams (token accounting); off for a server that rejects
    #: ``stream_options``. Clients that did not ask never see the chunk.
    stream_usage: bool = True


class OpenAICompatibleBackend(HTTPBackend):
    def __init__(self, instance: BackendInstance, extra: OpenAICompatibleExtra) -> None:
        super().__init__(instance)
        self.extra = extra

    def request_headers(self, call: ChatCall) -> dict[str, str]:
        """The credentials plus ``extra.headers`` (a step of the request, so no hook runs per request)."""
        headers = super().request_headers(call)
        if self.extra.headers:
            headers.update(self.extra.headers)
        return headers

    def request_body(self, call: ChatCall) -> dict[str, Any]:
        body = call.body
        if not call.stream or not self.extra.stream_usage:
            return body
        options = body.get("stream_options")
        options = options if isinstance(options, dict) else {}
        if options.get("include_usage") is True:
            return body
        return {**body, "stream_options": {**options, "include_usage": True}}

    def refusal(self) -> ProxyError | None:
        """Asked before every attempt: with a key (or none needed) and the api_url that start-up
        required, there is nothing to refuse, and no health report is built to say so."""
        if self.instance.api_key != "" and type(self) is OpenAICompatibleBackend:
            return None
        return super().refusal()

    def health(self) -> Health:
        if self.instance.api_key == "":
            names = " or ".join(self.instance.api_key_env)
            fix = f"set {names} in the environment" if names else "set api_key"
            return Health(False, f"api_key is empty for {self.instance.where()}; {fix}")
        return super().health()


@hookimpl
def resolve_backend(instance: BackendInstance) -> OpenAICompatibleBackend | None:
    if instance.connector != CONNECTOR or instance.synthesized:
        return None
    extra = validate_extra(OpenAICompatibleExtra, instance)
    if not instance.api_url:
        raise ConfigError(f"{instance.where()}: api_url is required (e.g. https://api.example.com/v1)")
    return OpenAICompatibleBackend(instance, extra)

