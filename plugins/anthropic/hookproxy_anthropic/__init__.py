"""hookproxy-anthropic: the Anthropic Messages front end and the ``anthropic`` connector.

Claude Code (or any Anthropic SDK client) points ``ANTHROPIC_BASE_URL`` at the proxy and reaches
every backend hookproxy can route to: OpenAI-compatible ones through translation, Anthropic ones
(``connector: anthropic``) without it. OpenAI chat clients reach Anthropic backends too.

Modules: ``frontend`` (the routes), ``to_chat`` / ``from_chat`` (Anthropic clients to
chat backends and back), ``connector`` with ``to_messages`` / ``from_messages`` (chat to
Anthropic backends and back), ``tokens`` (count_tokens), ``protocol`` (shared names and shapes),
``testing`` (a fake Anthropic upstream for tests).
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import ValidationError

from hookproxy import BackendInstance, ConfigError, Frontend, Proxy, hookimpl

from .connector import CONNECTOR, AnthropicBackend, AnthropicExtra
from .frontend import MessagesFrontend
from .protocol import ANTHROPIC

__all__ = ["ANTHROPIC", "CONNECTOR", "AnthropicBackend", "AnthropicExtra", "MessagesFrontend"]


@hookimpl
def register_frontends(register: Callable[[Frontend], None], proxy: Proxy) -> None:
    register(MessagesFrontend(proxy))


@hookimpl
def resolve_backend(instance: BackendInstance) -> AnthropicBackend | None:
    """Serve ``connector: anthropic`` instances (an unconfigured one has no URL: not offered)."""
    if instance.connector != CONNECTOR or instance.synthesized:
        return None
    try:
        extra = AnthropicExtra.model_validate(dict(instance.extra))
    except ValidationError as exc:
        problem = exc.errors()[0]
        key = ".".join(str(part) for part in problem["loc"])
        raise ConfigError(f"{instance.where()}: extra.{key}: {problem['msg']}") from exc
    if not instance.api_url:
        raise ConfigError(f"{instance.where()}: api_url is required (e.g. https://api.anthropic.com/v1)")
    return AnthropicBackend(instance, extra)

