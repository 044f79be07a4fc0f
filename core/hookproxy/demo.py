"""The built-in ``demo`` connector: answers without any model, so hookproxy can be tried at once.

``hookproxy demo`` serves one instance of it as the default backend: every request is answered
by repeating the last user message, streamed word by word when the client asks for a stream.
Nothing leaves the machine. A config block uses it like any other connector::

    backends:
      try-me:
        connector: demo
        models: [echo]
        extra: {word_delay_seconds: 0.05}
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from .backend import Backend, BackendInstance, ChatCall, Reply
from .config import validate_extra
from .hookspecs import hookimpl
from .sse import DONE, encode_event

CONNECTOR = "demo"


class DemoExtra(BaseModel):
    """The ``extra:`` block of a demo instance."""

    model_config = ConfigDict(extra="forbid")
    word_delay_seconds: float = Field(0.05, ge=0, le=5)


def demo_config_path() -> Path:
    """The configuration ``hookproxy demo`` serves (shipped inside the package)."""
    return Path(str(resources.files("hookproxy") / "demo.yaml"))


def answer_text(body: dict[str, Any]) -> str:
    """What the demo says: the last user message back, and where to go next."""
    said = ""
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                content = " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
            said = str(content or "")
            break
    return (f"Hello from the hookproxy demo backend. You said: {said!r}. "
            "Configure a real backend (see the README) to get answers from a model.")


class DemoBackend(Backend):
    """Answers locally; usable without any credentials."""

    def __init__(self, instance: BackendInstance, extra: DemoExtra) -> None:
        super().__init__(instance)
        self.extra = extra

    async def handle(self, call: ChatCall, proxy: object) -> Reply:
        model = str(call.body.get("model") or "echo")
        text = answer_text(call.body)
        if call.stream:
            return Reply(headers={"content-type": "text/event-stream; charset=utf-8"},
                         chunks=self._stream(text, model))
        body = {
            "id": "chatcmpl-demo", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": len(text.split()), "total_tokens": len(text.split())},
        }
        return Reply(headers={"content-type": "application/json"}, body=orjson.dumps(body))

    async def _stream(self, text: str, model: str) -> AsyncIterator[bytes]:
        created = int(time.time())

        def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
            return encode_event({"id": "chatcmpl-demo", "object": "chat.completion.chunk", "created": created,
                                 "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

        yield event({"role": "assistant", "content": ""})
        words = text.split(" ")
        for index, word in enumerate(words):
            if index:
                await asyncio.sleep(self.extra.word_delay_seconds)
            yield event({"content": word + (" " if index < len(words) - 1 else "")})
        yield event({}, "stop")
        yield DONE


@hookimpl
def resolve_backend(instance: BackendInstance) -> DemoBackend | None:
    if instance.connector != CONNECTOR:
        return None
    extra = validate_extra(DemoExtra, instance)
    return DemoBackend(instance, extra)
