"""The hybrid backend: one request, two phases, each served by the core (``proxy.complete``).

Streaming clients watch the reasoning live. To keep real HTTP statuses for errors (401/403/429
of either phase), the reasoning stream is opened, and its first piece awaited,
before the reply is returned; when nothing was streamed yet (reasoning skipped, empty, timed
out), the execution stream is opened before returning as well. Only an execution failure after
reasoning bytes went out becomes the core's in-stream error event.

Each phase is one call without failover; its error goes back to the core, which may retry the
whole hybrid call within the request's budget. Such a retry must not pay for the reasoning
model twice, so the finished reasoning (and the decision to reason) is kept in ``call.state``,
which survives retries of the same call, and only the execution phase runs again.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from hookproxy import (
    Backend,
    BackendInstance,
    ChatCall,
    Health,
    InvalidRequest,
    Proxy,
    ProxyError,
    Reply,
    UpstreamError,
    UpstreamTimeout,
)
from hookproxy.routing import parse_params
from hookproxy.sse import DONE, encode_comment, encode_event

from .policy import (
    DEFAULT_TAG,
    EXECUTION_DEFAULT,
    EXECUTION_PRESETS,
    INCOMPATIBLE_REASONING,
    PROBABILITY_OVERRIDE,
    REASONING_DEFAULT,
    REASONING_PRESETS,
    TAGS,
    Decision,
    HybridSettings,
    LatencyBackoff,
    decide,
    pick,
    request_probability,
    supports_system,
)
from .reasoning import Capture, inject, wrap
from .scrub import scrub_completion, scrub_stream
from .spec import Side, parse_spec

log = logging.getLogger("hookproxy.hybrid")

HEADER = "x-hookproxy-hybrid"
#: ``call.state`` key: what one hybrid call already did, kept across the core's retries of it.
STATE_KEY = "hybrid"
EXTRA_BODY_DROP = ("backend_type", "model", "session_id", PROBABILITY_OVERRIDE)


class HybridBackend(Backend):
    """The ``hybrid`` connector; its one (usually synthesized) instance serves ``hybrid:[...]``."""

    #: It only composes other backends, so it needs no configuration of its own.
    serves_unconfigured = True

    def __init__(self, instance: BackendInstance, proxy: Proxy) -> None:
        super().__init__(instance)
        self._proxy = proxy
        self.backoff = LatencyBackoff()

    def models(self) -> list[str]:
        return []  # a virtual backend: its models are those of the backends it composes

    def health(self) -> Health:
        if self._proxy.settings_for(HybridSettings).disable_hybrid_backend:
            return Health(False, "disabled by disable_hybrid_backend")
        return Health(True)

    async def handle(self, call: ChatCall, proxy: Proxy) -> Reply:
        settings = proxy.settings_for(HybridSettings)
        if settings.disable_hybrid_backend:
            raise InvalidRequest("Hybrid backend is disabled", code="hybrid_backend_disabled")
        try:
            spec = parse_spec(call.route.model)
        except ValueError as exc:
            raise InvalidRequest(str(exc), param="model", code="invalid_hybrid_model") from exc
        run = HybridRun(
            Phase.build(spec.reasoning, call.body, proxy, "reasoning"),
            Phase.build(spec.execution, call.body, proxy, "execution"),
            call, proxy, settings, self.backoff,
        )
        return await (run.stream() if call.stream else run.complete())


@dataclass
class Phase:
    """One side of the spec, resolved: its selector, backend kinds and request body."""

    name: str
    selector: str
    kinds: tuple[str, ...]
    body: dict[str, Any]

    @classmethod
    def build(cls, side: Side, client_body: dict[str, Any], proxy: Proxy, name: str) -> Phase:
        backend = proxy.lookup(side.backend)  # an unknown backend is a 400 before anything runs
        if isinstance(backend, HybridBackend):
            raise InvalidRequest("a hybrid side cannot be the hybrid backend", param="model",
                                 code="invalid_hybrid_model")
        kinds = (side.backend, backend.instance.name, backend.instance.connector)
        if name == "reasoning" and any(kind in INCOMPATIBLE_REASONING for kind in kinds):
            raise ProxyError(f"backend {side.backend!r} cannot be used as a reasoning backend", status=502,
                             type="upstream_error", code="incompatible_reasoning_backend")
        presets, default = (REASONING_PRESETS, REASONING_DEFAULT) if name == "reasoning" else (
            EXECUTION_PRESETS, EXECUTION_DEFAULT)
        params = parse_params(side.query, where=f" in the {name} side of the hybrid model")
        if params.pop("reasoning_effort", None) is not None:
            log.warning("reasoning_effort in the %s side of the hybrid model ignored: the hybrid sets it", name)
        forced = {**pick(kinds, presets, default), **params}
        body = {key: value for key, value in client_body.items() if key != PROBABILITY_OVERRIDE}
        # A literal ``extra_body`` (a raw JSON client writing what the SDK's extra_body= means)
        # is merged into the top level, its keys winning; the presets are not written into it.
        extra = body.pop("extra_body", None)
        if isinstance(extra, dict):
            body.update({k: v for k, v in extra.items() if k not in EXTRA_BODY_DROP})
        body.update(forced)
        return cls(name, side.selector, kinds, body)


def phase_error(phase: str, exc: ProxyError) -> ProxyError:
    """Client errors (4xx, incl. 401/403/429) keep their status; the rest is a 502."""
    if not isinstance(exc, UpstreamError) or exc.status < 500:
        return exc
    return ProxyError(f"Hybrid backend error ({phase} phase): {exc.message}", status=502,
                      type="upstream_error", code=f"hybrid_{phase}_failed")


class HybridRun:
    """Everything about one hybrid request; ``complete`` and ``stream`` are the two entry points."""

    def __init__(self, reasoning: Phase, execution: Phase, call: ChatCall, proxy: Proxy,
                 settings: HybridSettings, backoff: LatencyBackoff) -> None:
        self.reasoning, self.execution = reasoning, execution
        self.call, self.proxy, self.settings, self.backoff = call, proxy, settings, backoff
        self.messages: list[Any] = list(call.body.get("messages") or [])
        self.created = int(time.time())
        self._conversation = LatencyBackoff.key(self.messages)
        self._started = 0.0
        self.memo: dict[str, Any] = call.state.setdefault(STATE_KEY, {})
        decision = self.memo.get("decision")
        if decision is None:
            decision = self.memo["decision"] = decide(
                self.messages,
                request_probability(call.body, settings.reasoning_injection_probability),
                settings.hybrid_reasoning_force_initial_turns,
                backoff=lambda: backoff.use_skip(self._conversation),
            )
        self.decision: Decision = decision

    def _reused(self) -> tuple[Capture | None, str] | None:
        """The reasoning an earlier attempt of this call finished, if any (see the module docstring)."""
        done: tuple[Capture | None, str] | None = self.memo.get("reasoning")
        if done is not None:
            log.info("retrying only the execution phase of %s; reusing the reasoning already captured",
                     self.execution.selector)
        return done

    def _done(self, capture: Capture | None) -> tuple[Capture | None, str]:
        """The reasoning phase is over: the text to inject, kept for a retry of this call."""
        plain = self._finished(capture) if self.decision.run else ""
        self.memo["reasoning"] = (capture, plain)
        return capture, plain

    # --- phases -----------------------------------------------------------------------------

    async def _open_reasoning(self) -> Capture | None:
        """Always streamed, failover off; ``None`` when the timeout hit before a reply."""
        loop = asyncio.get_running_loop()
        self._started = loop.time()
        deadline = self._started + self.settings.hybrid_reasoning_model_timeout
        body = {**self.reasoning.body, "stream": True}
        try:
            async with asyncio.timeout_at(deadline):
                reply = await self.proxy.complete(self.reasoning.selector, body, stream=True, failover=False)
        except (TimeoutError, UpstreamTimeout) as exc:
            log.warning("reasoning phase %s timed out; answering without reasoning (%s)",
                        self.reasoning.selector, exc)
            return None
        except ProxyError as exc:
            raise phase_error("reasoning", exc) from exc
        return Capture(reply, deadline)

    def _finished(self, capture: Capture | None) -> str:
        """Record the latency (for the backoff) and return the reasoning to inject (empty on timeout)."""
        elapsed = asyncio.get_running_loop().time() - self._started
        self.backoff.record(self._conversation, elapsed, self.settings)
        if capture is None or capture.timed_out:
            return ""
        log.info("reasoning from %s: %d chars in %.1fs, stopped by %s", self.reasoning.selector,
                 len(capture.text), elapsed, capture.stop_reason)
        return capture.text

    async def _open_execution(self, plain: str, *, stream: bool) -> Reply:
        body = dict(self.execution.body)
        body["stream"] = stream
        body["messages"] = inject(
            self.messages, plain, pick(self.execution.kinds, TAGS, DEFAULT_TAG),
            system_messages=supports_system(self.execution.kinds),
            repeat=self.settings.hybrid_backend_repeat_messages,
        )
        timeout = self.settings.hybrid_execution_model_timeout
        try:
            async with asyncio.timeout(timeout):
                return await self.proxy.complete(self.execution.selector, body, stream=stream, failover=False)
        except TimeoutError as exc:
            raise ProxyError(
                f"Hybrid backend error (execution phase): {self.execution.selector} did not answer within "
                f"{timeout} s", status=502, type="upstream_error", code="hybrid_execution_failed",
            ) from exc
        except ProxyError as exc:
            raise phase_error("execution", exc) from exc

    # --- what the client receives -------------------------------------------------------------

    def _header(self, capture: Capture | None, plain: str) -> str:
        if not self.decision.run:
            return f"reasoning=skipped; reason={self.decision.reason}"
        if capture is None or capture.timed_out:
            return "reasoning=skipped; reason=timeout"
        if not plain:
            return f"reasoning=skipped; reason=empty; stop={capture.stop_reason}"
        return f"reasoning=used; reason={self.decision.reason}; stop={capture.stop_reason}"

    def _short_circuit(self, capture: Capture | None) -> bool:
        """Tool calls and no reasoning text: the reasoning model's calls are the answer."""
        return bool(capture and capture.tool_calls.calls and not capture.text and not capture.timed_out)

    async def complete(self) -> Reply:
        reasoned = self._reused()
        if reasoned is None:
            capture = await self._open_reasoning() if self.decision.run else None
            if capture is not None:
                async for _piece in capture.pieces():
                    pass
            reasoned = self._done(capture)
        capture, plain = reasoned
        if capture is not None and self._short_circuit(capture):
            return self._json_reply(self._tool_call_body(capture, chunk=False), "reasoning=tool_calls")
        reply = await self._open_execution(plain, stream=False)
        body = _loads(reply.body or b"")
        if not isinstance(body, dict):
            reply.headers[HEADER] = self._header(capture, plain)
            return reply
        scrub_completion(body)
        add_reasoning(body, plain, pick(self.reasoning.kinds, TAGS, DEFAULT_TAG))
        return self._json_reply(body, self._header(capture, plain), status=reply.status)

    async def stream(self) -> Reply:
        reasoned = self._reused()
        if reasoned is None:
            capture = await self._open_reasoning() if self.decision.run else None
            if capture is not None:
                pieces = capture.pieces()
                first = await anext(pieces, None)
                if first is not None:
                    live = self._live(capture, pieces, first)

                    async def close() -> None:  # also when the core never started iterating ``live``
                        await live.aclose()
                        await pieces.aclose()

                    hybrid = f"reasoning=used; reason={self.decision.reason}; mode=live"
                    return Reply(status=200, headers=self._stream_headers(hybrid), chunks=live, close=close)
            reasoned = self._done(capture)
        capture, plain = reasoned
        if capture is not None and self._short_circuit(capture):
            event = encode_event(self._tool_call_body(capture, chunk=True))
            return Reply(headers=self._stream_headers("reasoning=tool_calls"), chunks=_iterate(event, DONE))
        reply = await self._open_execution(plain, stream=True)
        return Reply(status=reply.status, headers=self._stream_headers(self._header(capture, plain)),
                     chunks=_execution_chunks(reply), close=reply.aclose)

    async def _live(
        self, capture: Capture, pieces: AsyncGenerator[str, None], first: str
    ) -> AsyncGenerator[bytes, None]:
        """Reasoning deltas as they arrive, then the scrubbed execution stream."""
        chunk_id = f"hybrid-reasoning-{uuid.uuid4().hex}"
        execution: Reply | None = None
        try:
            yield self._reasoning_event(chunk_id, first)
            async for piece in pieces:
                yield self._reasoning_event(chunk_id, piece)
            plain = self._finished(capture)
            yield encode_comment(f"hybrid {self._header(capture, plain)}")
            execution = await self._open_execution(plain, stream=True)
            async for chunk in _execution_chunks(execution):
                yield chunk
        finally:
            await pieces.aclose()  # closes the reasoning upstream if the client left early
            if execution is not None:
                await execution.aclose()

    def _reasoning_event(self, chunk_id: str, piece: str) -> bytes:
        return encode_event({
            "id": chunk_id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.reasoning.selector,
            "choices": [{"index": 0, "delta": {"role": "assistant", "reasoning_content": piece},
                         "finish_reason": None}],
        })

    def _tool_call_body(self, capture: Capture, *, chunk: bool) -> dict[str, Any]:
        calls = capture.tool_calls.as_list(with_index=chunk)
        message = {"role": "assistant", "content": "", "tool_calls": calls}
        return {
            "id": f"hybrid-tool-call-{uuid.uuid4().hex}",
            "object": "chat.completion.chunk" if chunk else "chat.completion",
            "created": self.created,
            "model": self.reasoning.selector,
            "choices": [{"index": 0, ("delta" if chunk else "message"): message, "finish_reason": "tool_calls"}],
        }

    def _stream_headers(self, hybrid: str) -> dict[str, str]:
        return {"content-type": "text/event-stream; charset=utf-8", HEADER: hybrid}

    def _json_reply(self, body: dict[str, Any], hybrid: str, status: int = 200) -> Reply:
        return Reply(status=status, headers={"content-type": "application/json", HEADER: hybrid},
                     body=orjson.dumps(body))


def add_reasoning(body: dict[str, Any], plain: str, tag: str) -> None:
    """The reasoning goes on every choice's message (or under ``metadata`` without choices)."""
    if not plain:
        return
    fields = {"reasoning": wrap(plain, tag), "reasoning_content": plain}
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        body["metadata"] = {**(body.get("metadata") or {}), **fields, "reasoning_format": "hybrid_injected"}
        return
    for choice in choices:
        if isinstance(choice, dict):
            message = choice.setdefault("message", {})
            message.setdefault("role", "assistant")
            message.update(fields)


def _execution_chunks(reply: Reply) -> AsyncIterator[bytes]:
    if reply.chunks is not None:
        return scrub_stream(reply.chunks, reply.backend)
    return _iterate(*_body_as_events(reply.body or b""))


def _body_as_events(raw: bytes) -> list[bytes]:
    """An execution upstream that answered a stream request with JSON: replay it as one chunk."""
    body = _loads(raw)
    if not isinstance(body, dict):
        return [DONE]
    scrub_completion(body)
    choices = [
        {"index": choice.get("index", 0), "delta": choice.get("message") or {},
         "finish_reason": choice.get("finish_reason")}
        for choice in body.get("choices") or [] if isinstance(choice, dict)
    ]
    event = {**body, "object": "chat.completion.chunk", "choices": choices}
    return [encode_event(event), DONE]


async def _iterate(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
