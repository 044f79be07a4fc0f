"""Bytes to a streaming client: the relay, and keep-alives while failover waits (F-3).

``relay`` forwards a reply's SSE bytes untouched; an error after the first byte becomes one
``data: {"error": ...}`` event and the end of the stream (E-4..E-6).

``after_wait`` is used when a streaming request needs to wait (a retry after Retry-After, a
delayed failover) before any byte reached the client. The app has then already answered
``200 text/event-stream``; this generator sends ``: retrying in Ns`` and ``: keepalive``
comments every ``keepalive_interval`` while the remaining attempts run, then relays the reply
that finally came, or ends with one error event. The response headers went out before the
answering backend was known, so it is named in a ``: hookproxy backend=... model=...`` comment.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence

import orjson

from .backend import Reply
from .errors import ProxyError, UpstreamUnreachable, error_event
from .failover import Attempts
from .sse import DONE, encode_comment

log = logging.getLogger("hookproxy")


async def relay(reply: Reply, head: Sequence[bytes] = ()) -> AsyncIterator[bytes]:
    """Relay a stream (``head``: chunks already pulled from it); an error after the first byte
    becomes one error event, then the end."""
    assert reply.chunks is not None
    try:
        for chunk in head:
            yield chunk
        async for chunk in reply.chunks:
            yield chunk
    except ProxyError as exc:
        log.warning("stream from %s ended with an error: %s", reply.backend, exc.message)
        yield error_event(exc)
    except OSError as exc:
        yield error_event(UpstreamUnreachable(f"stream from {reply.backend} broke: {exc}"))
    finally:
        await reply.aclose()


async def after_wait(attempts: Attempts, wait: float, interval: float) -> AsyncIterator[bytes]:
    """Wait, keep the client warm, run the remaining attempts, and relay what answers."""
    step: Reply | float = wait
    try:
        while not isinstance(step, Reply):
            yield encode_comment(f"retrying in {step:g}s")
            task = asyncio.ensure_future(_next_after(attempts, step))
            finished = False
            try:
                while not finished:
                    done, _ = await asyncio.wait({task}, timeout=interval)
                    finished = bool(done)
                    if not finished:
                        yield encode_comment("keepalive")
            finally:
                if not finished:
                    _abandon(task)
            step = task.result()
    except ProxyError as exc:
        yield error_event(exc)
        return
    yield encode_comment(f"hookproxy backend={step.backend} model={step.model}")
    if step.chunks is not None:
        async for chunk in relay(step):
            yield chunk
        return
    await step.aclose()
    yield completion_as_stream(step.body or b"")


def _abandon(task: asyncio.Future[Reply | float]) -> None:
    """Stop an attempt the client no longer waits for; a reply that just arrived is closed."""
    if not task.done():
        task.cancel()
    elif not task.cancelled() and task.exception() is None:
        result = task.result()
        if isinstance(result, Reply):
            closing = asyncio.ensure_future(result.aclose())
            _closing.add(closing)
            closing.add_done_callback(_closing.discard)


#: Close tasks of abandoned replies (kept referenced until done).
_closing: set[asyncio.Future[None]] = set()


async def _next_after(attempts: Attempts, wait: float) -> Reply | float:
    await asyncio.sleep(wait)
    return await attempts.next()


def completion_as_stream(body: bytes) -> bytes:
    """A whole ``chat.completion`` re-sent as the chunk events a streaming client expects.

    Some upstreams ignore ``stream: true``; an SDK in stream mode would find no ``delta`` in a
    plain completion and show nothing. Each choice's message becomes one delta (tool calls get
    their ``index``), followed by ``[DONE]``.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return error_event(UpstreamUnreachable("the backend answered a stream request with a non-JSON body")) + DONE
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        return b"data: " + orjson.dumps(data) + b"\n\n" + DONE
    choices = []
    for position, choice in enumerate(data["choices"]):
        choice = choice if isinstance(choice, dict) else {}
        delta = dict(choice.get("message") or {})
        if isinstance(delta.get("tool_calls"), list):
            delta["tool_calls"] = [{"index": index, **call} for index, call in enumerate(delta["tool_calls"])]
        choices.append({"index": choice.get("index", position), "delta": delta,
                        "finish_reason": choice.get("finish_reason"), "logprobs": choice.get("logprobs")})
    chunk = {**data, "object": "chat.completion.chunk", "choices": choices}
    return b"data: " + orjson.dumps(chunk) + b"\n\n" + DONE
