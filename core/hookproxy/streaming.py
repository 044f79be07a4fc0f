"""Bytes to a streaming client: the relay, and keep-alives while failover waits.

``relay`` sends a reply's SSE events to the client through its front end: a reply already in
the front end's protocol goes out untouched (the fast path: no parsing, no re-encoding), a
canonical reply is rendered by ``Frontend.render_stream``. An error after the first byte
becomes the front end's one error event (``Frontend.error_event``) and the end of the stream.

For the OpenAI chat front end the relay also enforces one rule on canonical streams: a client
that did not ask for ``stream_options.include_usage`` never receives a chunk without choices
(an upstream asked for usage by a plugin, such as qwen-oauth, sends one); the usage it carried is
kept in ``client.state["usage"]`` for the proxy's own accounting.

``after_wait`` is used when a streaming request must wait longer than a keep-alive interval (a
retry after Retry-After, a delayed failover) before any byte reached the client. The app has
then already answered ``200 text/event-stream``; this generator sends ``: retrying in Ns`` and
the front end's keep-alive frame every ``keepalive_interval`` while the remaining attempts run,
then relays the reply that finally came, or ends with one error event. The response headers went
out before the answering backend was known, so it is named in a ``: hookproxy backend=...``
comment.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

import orjson

from .backend import Reply
from .errors import ProxyError, ShuttingDown, UpstreamUnreachable, error_event
from .failover import Attempts
from .frontend import OPENAI_CHAT, ClientRequest, Frontend
from .observe import Trace, usage_in
from .sse import DONE, encode_comment
from .streamcheck import replay

log = logging.getLogger("hookproxy")

EVENT_STREAM = "text/event-stream; charset=utf-8"
_USAGE = b'"usage"'


async def relay(
    frontend: Frontend, client: ClientRequest, reply: Reply, head: Sequence[bytes], trace: Trace
) -> AsyncIterator[bytes]:
    """Relay a stream (``head``: chunks already pulled from it) through ``frontend``; an error
    after the first byte becomes one error event, then the end. Usage seen on the way goes to
    ``trace``, which is ended when the stream is."""
    assert reply.chunks is not None
    first = True
    status = reply.status
    try:
        source = replay(head, reply.chunks) if head else reply.chunks
        if reply.protocol == OPENAI_CHAT and frontend.protocol == OPENAI_CHAT:
            drop = not client.usage_requested
            async for chunk in source:
                if _USAGE in chunk:
                    chunk = _take_usage(chunk, trace, client, drop)
                if first:
                    first, trace.first_byte = False, trace.elapsed()
                yield chunk
        else:
            source = _tap_usage(source, trace, client)
            if reply.protocol != frontend.protocol:
                source = frontend.render_stream(source, client)
            async for chunk in source:
                if first:
                    first, trace.first_byte = False, trace.elapsed()
                yield chunk
    except ProxyError as exc:
        if not isinstance(exc, ShuttingDown):  # shutdown logs one line for all streams it ends
            log.warning("stream from %s ended with an error: %s", reply.backend, exc.message)
        trace.error = exc.code or exc.type
        yield frontend.error_event(exc, client)
    except OSError as exc:
        error = UpstreamUnreachable(f"stream from {reply.backend} broke: {exc}")
        trace.error = error.code
        yield frontend.error_event(error, client)
    finally:
        await reply.aclose()
        trace.end(status)


async def _tap_usage(chunks: AsyncIterator[bytes], trace: Trace, client: ClientRequest) -> AsyncIterator[bytes]:
    """``chunks`` unchanged, with the usage they carry noted on the way."""
    async for chunk in chunks:
        if _USAGE in chunk:
            _take_usage(chunk, trace, client, drop=False)
        yield chunk


def _take_usage(chunk: bytes, trace: Trace, client: ClientRequest, drop: bool) -> bytes:
    """Note the usage in ``chunk``'s events; with ``drop``, cut out the events without choices
    (a usage-only chunk the client did not ask for)."""
    kept = []
    dropped = False
    for event in chunk.split(b"\n\n"):
        if _USAGE in event:
            payload = _event_json(event)
            usage = usage_in(payload)
            if usage is not None:
                trace.add_usage(usage)
            if drop and isinstance(payload, dict) and payload.get("choices") == []:
                dropped = True
                continue
        kept.append(event)
    return b"\n\n".join(kept) if dropped else chunk


def _event_json(event: bytes) -> Any:
    data = b"".join(line[5:].lstrip() for line in event.splitlines() if line.startswith(b"data:"))
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def as_stream(reply: Reply) -> None:
    """Give a canonical non-streamed ``reply`` (an upstream that ignored ``stream: true``) the
    chunks a streaming client expects."""
    body = completion_as_stream(reply.body or b"")
    reply.body = None

    async def chunks() -> AsyncIterator[bytes]:
        yield body

    reply.chunks = chunks()


async def after_wait(
    frontend: Frontend, client: ClientRequest, attempts: Attempts, wait: float, interval: float, trace: Trace
) -> AsyncIterator[bytes]:
    """Wait, keep the client warm, run the remaining attempts, and relay what answers."""
    trace.first_byte = trace.elapsed()
    step: Reply | None = None
    waiting = _wait_for_reply(frontend, attempts, wait, interval, trace)
    try:
        async for frame in waiting:
            if isinstance(frame, Reply):
                step = frame
            else:
                yield frame
        assert step is not None
        if step.chunks is None and step.protocol != OPENAI_CHAT:
            await step.aclose()
            raise UpstreamUnreachable(f"backend {step.backend!r} answered a stream request with a non-streamed body")
    except ProxyError as exc:
        trace.error = exc.code or exc.type
        trace.end(200)
        yield frontend.error_event(exc, client)
        return
    finally:
        await waiting.aclose()  # a client that left stops the pending attempt now
        if step is None:
            trace.end(200)
    yield encode_comment(f"hookproxy backend={step.backend} model={step.model}")
    if step.chunks is None:
        as_stream(step)
    async for chunk in relay(frontend, client, step, (), trace):
        yield chunk


async def _wait_for_reply(
    frontend: Frontend, attempts: Attempts, wait: float, interval: float, trace: Trace
) -> AsyncGenerator[bytes | Reply, None]:
    """Comments and keep-alive frames while the attempts run, then the reply (last)."""
    step: Reply | float = wait
    while not isinstance(step, Reply):
        trace.waits += step
        yield encode_comment(f"retrying in {step:g}s")
        task = asyncio.ensure_future(_next_after(attempts, step))
        finished = False
        try:
            while not finished:
                done, _ = await asyncio.wait({task}, timeout=interval)
                finished = bool(done)
                if attempts.proxy.stopping and not finished:
                    raise ShuttingDown("hookproxy is shutting down; the retry was abandoned")
                if not finished:
                    yield frontend.keepalive
        finally:
            if not finished:
                _abandon(task)
        step = task.result()
    yield step


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
