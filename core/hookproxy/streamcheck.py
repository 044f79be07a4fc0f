"""Look at the start of a streamed answer before committing it to the client.

An upstream may answer ``200 text/event-stream`` and then send nothing useful: no event at all,
only a role chunk and ``[DONE]``, an error event, garbage, or a reset. Once bytes reached the
client it is too late to fail over, so when another candidate exists the attempt loop pulls
events until the first one that carries output (content, tool calls, reasoning, or a
finish_reason). With no other candidate it only waits for the first valid event, which arrives
with the first byte anyway: a stream that is empty, garbage or an error from its start then
reaches the client as a 502 with a message rather than an empty 200. The raw bytes pulled so far
are re-emitted untouched and the rest of the upstream iterator follows, so nothing is re-encoded.

Each protocol judges its own events (``Frontend.started``): a backend that relays Anthropic
events natively is checked by the Anthropic front end's rules, canonical chunks by
:func:`openai_started`.

Choice: only the start is checked. A stream that first sends content and later breaks is
relayed, and its failure becomes one error event (``relay``): bytes already went out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from .backend import Reply
from .errors import UpstreamError, UpstreamUnreachable
from .redaction import redact_shapes
from .sse import SSEEvent, SSEParser

#: Commit anyway after this many bytes or events without output (a chatty but valid upstream).
PEEK_MAX_BYTES = 256 * 1024
PEEK_MAX_EVENTS = 64
_OUTPUT_KEYS = ("content", "tool_calls", "reasoning_content", "reasoning", "function_call", "refusal")


class BadStream(UpstreamError):
    """A 2xx stream that ended, broke or spoke garbage before its first output event (502)."""

    code = "upstream_bad_stream"
    #: Read by the core policy: trying the same backend again is unlikely to help.
    fail_over_at_once = True

    def __init__(self, message: str, **kwargs: Any) -> None:
        kwargs.setdefault("status", 502)
        super().__init__(message, **kwargs)


def has_output(payload: Any) -> bool:
    """Whether one parsed chunk carries something a client shows (or a finish_reason)."""
    if not isinstance(payload, dict):
        return False
    choices = payload.get("choices")
    if not isinstance(choices, list):
        return False
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        if choice.get("finish_reason"):
            return True
        delta = choice.get("delta") or choice.get("message")
        if isinstance(delta, dict) and any(delta.get(key) for key in _OUTPUT_KEYS):
            return True
    return False


#: How a protocol judges one event at the start of a stream (``Frontend.started``).
Judge = Callable[[SSEEvent, str, bool], bool]


def openai_started(event: SSEEvent, backend: str, need_output: bool) -> bool:
    """The judge for canonical (OpenAI chat) streams: True once output starts (or any valid
    event, without ``need_output``); False to keep reading; raises BadStream for a failed start."""
    if event.data is None:
        if event.comments:
            return False  # an upstream keep-alive
        raise BadStream(f"backend {backend!r} sent a malformed SSE event before any output", backend=backend)
    if event.is_done:
        raise BadStream(f"backend {backend!r} ended its stream without any content", backend=backend)
    try:
        payload = event.json()
    except ValueError:
        raise BadStream(f"backend {backend!r} sent malformed SSE data: {event.data[:200]!r}", backend=backend) from None
    if isinstance(payload, dict) and payload.get("error"):
        detail = payload["error"]
        message = detail.get("message") if isinstance(detail, dict) else detail
        # The message is the upstream's own words: anything shaped like a key or token goes.
        raise BadStream(f"backend {backend!r} streamed an error before any output: {redact_shapes(str(message))}",
                        backend=backend)
    return has_output(payload) if need_output else True


async def read_start(reply: Reply, *, need_output: bool = True, judge: Judge = openai_started) -> list[bytes]:
    """Pull ``reply.chunks`` up to its first output event (or, without ``need_output``, its first
    valid event) and return the chunks pulled; the rest stays in ``reply.chunks``. ``judge``
    reads the reply's protocol (OpenAI chunks by default). Raises
    BadStream for a failed start, and closes the reply whenever it raises (including on
    cancellation by the failover budget)."""
    assert reply.chunks is not None
    chunks = reply.chunks
    parser = SSEParser(reply.backend)
    pulled: list[bytes] = []
    size = events = 0
    try:
        while True:
            try:
                chunk = await chunks.__anext__()
            except UpstreamUnreachable as exc:
                raise BadStream(f"{exc.message} (before any output)", backend=reply.backend) from exc
            except StopAsyncIteration:
                for event in parser.close():
                    if judge(event, reply.backend, need_output):
                        break
                else:
                    raise BadStream(f"backend {reply.backend!r} ended its stream before any event",
                                    backend=reply.backend) from None
                break
            pulled.append(chunk)
            size += len(chunk)
            found = False
            for piece in _event_pieces(chunk):
                for event in parser.feed(piece):
                    events += 1
                    if judge(event, reply.backend, need_output):
                        found = True
                        break
                if found:
                    break
            if found or size >= PEEK_MAX_BYTES or events >= PEEK_MAX_EVENTS:
                return pulled
    except BaseException:
        await reply.aclose()
        raise
    return pulled


def _event_pieces(chunk: bytes) -> list[bytes]:
    """``chunk`` cut after each blank line, so the first event is parsed without the rest.

    One read often holds a whole burst of events; parsing them all to judge the first one was
    the main cost of this check.
    """
    end = chunk.find(b"\n\n")
    if end < 0 or end + 2 == len(chunk):
        return [chunk]
    return [chunk[: end + 2], chunk[end + 2 :]]


async def first_output(reply: Reply, judge: Judge = openai_started) -> Reply:
    """``reply`` with its first output event already read and re-emitted in front, or raise."""
    assert reply.chunks is not None
    rest = reply.chunks
    pulled = await read_start(reply, judge=judge)
    reply.chunks = replay(pulled, rest)
    return reply


async def replay(pulled: Sequence[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Chunks already pulled from a stream, then the rest of it."""
    for chunk in pulled:
        yield chunk
    async for chunk in rest:
        yield chunk

