"""The reasoning phase's data: capture from the stream, normalize, inject.

:class:`Capture` reads the reasoning model's stream and hands out reasoning text as it
arrives (so a streaming client can watch it live). It stops at the first closing tag, a
``finish_reason``, the answer starting after ``reasoning_content``, the transition marker rule
or the size limit, and then closes the upstream at once: every token after that is money
spent for nothing. The deadline covers the whole capture.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import orjson

from hookproxy import ProxyError, Reply
from hookproxy.sse import SSEParser

from .scrub import INJECTION_PHRASE, TagScanner

log = logging.getLogger("hookproxy.hybrid")

MAX_CHARS = 16384  # 16384 chars, and len/4 >= 4096 "tokens" is the same bound
TRANSITION_MARKERS = ("therefore,", "in conclusion,", "to summarize,", "in summary,")
TRANSITION_MIN_CHARS = 1000


@dataclass
class ToolCalls:
    """Tool-call fragments of a stream, merged by index (names and ids set once)."""

    calls: dict[int, dict[str, Any]] = field(default_factory=dict)

    def add(self, fragments: Any) -> None:
        for position, fragment in enumerate(fragments if isinstance(fragments, list) else []):
            if not isinstance(fragment, dict):
                continue
            index = fragment.get("index", position)
            call = self.calls.setdefault(int(index), {"id": "", "type": "function",
                                                      "function": {"name": "", "arguments": ""}})
            call["id"] = call["id"] or fragment.get("id") or ""
            function = fragment.get("function") or {}
            call["function"]["name"] = call["function"]["name"] or function.get("name") or ""
            call["function"]["arguments"] += function.get("arguments") or ""

    def as_list(self, *, with_index: bool) -> list[dict[str, Any]]:
        return [({"index": index} if with_index else {}) | call for index, call in sorted(self.calls.items())]


class Capture:
    """Consumes one streamed reasoning reply; :meth:`pieces` yields plain reasoning text."""

    def __init__(self, reply: Reply, deadline: float) -> None:
        self.reply = reply
        self.deadline = deadline
        self.parts: list[str] = []
        self.length = 0
        self.tool_calls = ToolCalls()
        self.stop_reason = ""
        self._scanners = {"reasoning": TagScanner(), "content": TagScanner()}
        self._saw_reasoning_content = False

    @property
    def text(self) -> str:
        return "".join(self.parts).strip()

    @property
    def timed_out(self) -> bool:
        return self.stop_reason == "timeout"

    async def pieces(self) -> AsyncGenerator[str, None]:
        """Reasoning text as it arrives; the upstream is closed before the last piece is yielded."""
        last: list[str] = []
        try:
            if self.reply.chunks is None:  # an upstream that ignored stream=true: use its body
                last = self._data(_loads(self.reply.body or b""))
            else:
                async with aclosing(self._reads(self.reply.chunks)) as reads:
                    async for pieces in reads:
                        if self.stop_reason:
                            last = pieces
                            break
                        for piece in pieces:
                            yield piece
            if self.stop_reason not in ("closing_tag", "timeout"):
                last += self._keep("".join(scanner.flush() for scanner in self._scanners.values()))
            self.stop_reason = self.stop_reason or "end_of_stream"
        finally:
            await self.reply.aclose()
        for piece in last:
            yield piece

    async def _reads(self, chunks: AsyncIterator[bytes]) -> AsyncGenerator[list[str], None]:
        """Per upstream read, the new reasoning pieces; every read is bounded by the deadline."""
        parser = SSEParser(self.reply.backend)  # an overlong line is a 502 naming the backend
        while not self.stop_reason:
            try:
                async with asyncio.timeout_at(self.deadline):
                    raw = await anext(chunks, None)
            except TimeoutError:
                self.stop_reason = "timeout"
                return
            except (ProxyError, OSError, ValueError) as exc:  # use what was captured so far
                log.warning("reasoning stream broke after %d chars: %s", self.length, exc)
                self.stop_reason = "error"
                return
            pieces: list[str] = []
            for event in parser.feed(raw) if raw is not None else parser.close():
                if event.is_done:
                    self.stop_reason = self.stop_reason or "end_of_stream"
                if self.stop_reason:
                    break
                if event.data is not None:
                    pieces += self._data(_loads(event.data.encode()))
            yield pieces
            if raw is None:
                return

    def _data(self, data: Any) -> list[str]:
        """The reasoning and content text of one event, plus tool-call fragments."""
        if not isinstance(data, dict) or "error" in data:
            return []
        pieces: list[str] = []
        for choice in data.get("choices") or [{}]:
            if not isinstance(choice, dict) or self.stop_reason:
                continue
            delta = choice.get("delta") or choice.get("message") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning") or data.get("reasoning_content")
            content = delta.get("content") or choice.get("text") or data.get("content")
            if isinstance(reasoning, str) and reasoning:
                self._saw_reasoning_content = True
                pieces += self._scan("reasoning", reasoning)
            if isinstance(content, str) and content and not self.stop_reason:
                if self._saw_reasoning_content:
                    self.stop_reason = "answer_started"  # after reasoning_content, content is the answer
                else:
                    pieces += self._scan("content", content)
            self.tool_calls.add(delta.get("tool_calls"))
            if choice.get("finish_reason") is not None and not self.stop_reason:
                self.stop_reason = "finish_reason"
        return pieces

    def _scan(self, source: str, text: str) -> list[str]:
        pieces: list[str] = []
        for kind, value in self._scanners[source].feed(text):
            if self.stop_reason:
                break
            if kind == "close":
                self.stop_reason = "closing_tag"
            elif kind == "text":
                pieces += self._keep(value)
        return pieces

    def _keep(self, text: str) -> list[str]:
        """Record text, then apply the size and transition-marker triggers."""
        text = text[: MAX_CHARS - self.length]
        if not text:
            self.stop_reason = self.stop_reason or ("size_limit" if self.length >= MAX_CHARS else "")
            return []
        window = ("".join(self.parts[-1:])[-20:] + text).lower()
        self.parts.append(text)
        self.length += len(text)
        if self.length >= MAX_CHARS:
            self.stop_reason = "size_limit"
        elif self.length > TRANSITION_MIN_CHARS and any(marker in window for marker in TRANSITION_MARKERS):
            self.stop_reason = "transition_marker"
        return [text]


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


# --- normalize and inject ---------------------------------------------------------------------


def wrap(text: str, tag: str) -> str:
    """Tags on their own lines when the body has a newline or starts with ``<``."""
    if "\n" in text or text.startswith("<"):
        return f"<{tag}>\n{text}\n</{tag}>"
    return f"<{tag}>{text}</{tag}>"


def _append_text(content: Any, text: str) -> Any:
    if isinstance(content, list):
        return [*content, {"type": "text", "text": text}]
    return f"{content}\n\n{text}" if isinstance(content, str) and content else text


def _prepend_text(content: Any, text: str) -> Any:
    if isinstance(content, list):
        return [{"type": "text", "text": text + "\n\n"}, *content]
    return f"{text}\n\n{content}" if isinstance(content, str) and content else text


def inject(
    messages: Sequence[Any], plain: str, tag: str, *, system_messages: bool, repeat: bool
) -> list[Any]:
    """The execution model's messages (a new list of copies; the client's are never touched).

    Into the first system message (appended after a blank line) or a new one at index 0;
    for backends without system messages, before the first user message's text. List
    content gets a text part. ``repeat`` appends an assistant message carrying it.
    """
    out = [dict(message) if isinstance(message, dict) else message for message in messages]
    if not plain:
        return out
    tagged = wrap(plain, tag)
    block = f"{INJECTION_PHRASE}\n\n{tagged}"
    role = "system" if system_messages else "user"
    index = next((i for i, m in enumerate(out) if isinstance(m, dict) and m.get("role") == role), None)
    if index is None:
        out.insert(0, {"role": role, "content": block})
    elif system_messages:
        out[index]["content"] = _append_text(out[index].get("content"), block)
    else:
        out[index]["content"] = _prepend_text(out[index].get("content"), block)
    if repeat:
        out.append({"role": "assistant", "content": "", "reasoning": tagged, "reasoning_content": plain})
    return out
