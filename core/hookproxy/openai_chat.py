"""The built-in OpenAI chat-completions front end: ``POST /v1/chat/completions``.

Registered through the core's own ``openai-chat`` entry point with the ``register_frontends``
hook, exactly like a third-party front end. Its protocol is the canonical one, so it translates
nothing: it checks the few fields the proxy needs itself and hands the body on untouched
(``tools``, ``response_format``, vendor fields: all the upstream's business).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import InvalidRequest
from .frontend import OPENAI_CHAT, ClientRequest, Frontend, HTTPRequest
from .hookspecs import hookimpl


class ChatCompletionsFrontend(Frontend):
    name = "openai-chat"
    protocol = OPENAI_CHAT
    paths = ("/v1/chat/completions", "/chat/completions")

    def parse(self, request: HTTPRequest) -> ClientRequest:
        body = request.body
        assert body is not None
        model, stream = validate(body)
        options = body.get("stream_options")
        usage = stream and isinstance(options, dict) and options.get("include_usage") is True
        return ClientRequest(self.name, OPENAI_CHAT, model, stream, body, usage_requested=usage)


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


@hookimpl
def register_frontends(register: Callable[[Frontend], None]) -> None:
    register(ChatCompletionsFrontend())
