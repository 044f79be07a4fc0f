"""The built-in ``openai-compatible`` connector: any API that speaks OpenAI chat completions.

It is registered through the core's own ``hookproxy`` entry point, exactly like a third-party
plugin, and doubles as the smallest example of one. Instance keys: ``api_url`` (required),
``api_key`` (sent as ``Authorization: Bearer``), ``models``, ``timeout``; ``extra.headers`` adds
fixed headers to every upstream request.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .backend import BackendInstance, ChatCall, Health, HTTPBackend
from .errors import ConfigError
from .hookspecs import hookimpl

CONNECTOR = "openai-compatible"


class OpenAICompatibleExtra(BaseModel):
    """The ``extra:`` block of an openai-compatible instance."""

    model_config = ConfigDict(extra="forbid")
    headers: dict[str, str] = Field(default_factory=dict)


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

    def health(self) -> Health:
        if self.instance.api_key == "":
            return Health(False, f"api_key is empty for {self.instance.where()}; set its environment variable")
        return super().health()


@hookimpl
def resolve_backend(instance: BackendInstance) -> OpenAICompatibleBackend | None:
    if instance.connector != CONNECTOR or instance.synthesized:
        return None
    try:
        extra = OpenAICompatibleExtra.model_validate(dict(instance.extra))
    except ValidationError as exc:
        problem = exc.errors()[0]
        key = ".".join(str(part) for part in problem["loc"])
        raise ConfigError(f"{instance.where()}: extra.{key}: {problem['msg']}") from exc
    if not instance.api_url:
        raise ConfigError(f"{instance.where()}: api_url is required (e.g. https://api.example.com/v1)")
    return OpenAICompatibleBackend(instance, extra)

