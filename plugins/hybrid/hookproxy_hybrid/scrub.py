"""Cross-chunk handling of ``<think>``-style tags.

Upstreams split text anywhere, so ``<thi`` can end one chunk and ``nk>`` start the next. The
:class:`TagScanner` holds back a trailing fragment that could still become a reasoning tag and
reports text, opening tags and closing tags in order. Two users build on it: the reasoning
capture (keep what is inside, stop at the close) and the :class:`Scrubber` that removes
reasoning blocks from the execution model's answer, in streams and in whole bodies.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any, Literal

import orjson

from hookproxy.sse import DONE, SSEEvent, SSEParser, encode_comment, encode_event

TAG_NAMES = ("thinking", "think", "reasoning", "reason")
#: Longest tag (with attributes) we wait for before deciding a ``<`` was plain text.
MAX_TAG = 80
_TAG = re.compile(r"<(/?)(thinking|think|reasoning|reason)(?:\s[^<>]{0,64})?>", re.IGNORECASE)
_PARTIAL = re.compile(r"<(/?)([A-Za-z]*)(\s[^<>]*)?")
INJECTION_PHRASE = "Consider this reasoning when formulating your response:"

Token = tuple[Literal["text", "open", "close"], str]


def _could_become_tag(tail: str) -> bool:
    match = _PARTIAL.fullmatch(tail)
    if match is None or len(tail) > MAX_TAG:
        return False
    name = match.group(2).lower()
    if match.group(3) is not None:
        return name in TAG_NAMES
    return any(candidate.startswith(name) for candidate in TAG_NAMES)


class TagScanner:
    """Incremental tokenizer: ``feed`` returns the tokens its text completed; ``flush`` the rest."""

    def __init__(self) -> None:
        self._held = ""

    def feed(self, text: str) -> list[Token]:
        buffer = self._held + text
        tokens: list[Token] = []
        position = 0
        for match in _TAG.finditer(buffer):
            if match.start() > position:
                tokens.append(("text", buffer[position : match.start()]))
            tokens.append(("close" if match.group(1) else "open", match.group(2).lower()))
            position = match.end()
        rest = buffer[position:]
        bracket = rest.rfind("<")
        if bracket >= 0 and _could_become_tag(rest[bracket:]):
            self._held, rest = rest[bracket:], rest[:bracket]
        else:
            self._held = ""
        if rest:
            tokens.append(("text", rest))
        return tokens

    def flush(self) -> str:
        """The held-back fragment, which the stream's end proved to be plain text."""
        held, self._held = self._held, ""
        return held


class Scrubber:
    """Removes ``<think>…</think>`` (and the other reasoning tags) from one text stream.

    Text inside an open block is held until the block closes (then dropped). A block the model
    never closes is given back at :meth:`flush`, without its opening tag: losing the rest of an
    answer to a stray ``<think>`` would be worse than showing it.
    """

    def __init__(self) -> None:
        self._scanner = TagScanner()
        self._depth = 0
        self._inside: list[str] = []

    def feed(self, text: str) -> str:
        kept: list[str] = []
        for kind, value in self._scanner.feed(text):
            if kind == "open":
                self._depth += 1
            elif kind == "close":
                self._depth = max(0, self._depth - 1)
                if self._depth == 0:
                    self._inside.clear()
            elif self._depth == 0:
                kept.append(value)
            else:
                self._inside.append(value)
        return "".join(kept).replace(INJECTION_PHRASE, "")

    def flush(self) -> str:
        tail = self._scanner.flush()
        if self._depth == 0:
            return tail
        unclosed, self._inside, self._depth = "".join(self._inside) + tail, [], 0
        return unclosed.replace(INJECTION_PHRASE, "")


def scrub_text(text: str) -> str:
    """Scrub one whole string (a non-streamed answer)."""
    scrubber = Scrubber()
    return scrubber.feed(text) + scrubber.flush()


def drop_key(value: Any, key: str) -> None:
    """Remove ``key`` from every mapping inside ``value`` (used for ``reasoning_content``)."""
    if isinstance(value, dict):
        value.pop(key, None)
        for item in value.values():
            drop_key(item, key)
    elif isinstance(value, list):
        for item in value:
            drop_key(item, key)


def scrub_completion(body: dict[str, Any]) -> None:
    """Scrub a ``chat.completion`` body in place (it is our parsed copy, never the client's)."""
    drop_key(body, "reasoning_content")
    for choice in body.get("choices") or []:
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict):
            message.pop("reasoning", None)
            if isinstance(message.get("content"), str):
                message["content"] = scrub_text(message["content"])


class StreamScrubber:
    """Scrubs a streamed answer event by event, one :class:`Scrubber` per choice index."""

    def __init__(self) -> None:
        self._choices: dict[int, Scrubber] = {}

    def event(self, data: dict[str, Any]) -> dict[str, Any]:
        drop_key(data, "reasoning_content")
        for choice in data.get("choices") or []:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if not isinstance(delta, dict):
                continue
            delta.pop("reasoning", None)
            scrubber = self._choices.setdefault(int(choice.get("index") or 0), Scrubber())
            if isinstance(delta.get("content"), str):
                delta["content"] = scrubber.feed(delta["content"])
            if choice.get("finish_reason") is not None:
                tail = scrubber.flush()
                if tail:
                    delta["content"] = (delta.get("content") or "") + tail
        return data

    def encode(self, event: SSEEvent) -> bytes:
        if event.is_done:
            return DONE
        if event.data is None:
            return b"".join(encode_comment(comment) for comment in event.comments)
        try:
            data = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            return encode_event(event.data, event=event.event)
        if isinstance(data, dict):
            data = self.event(data)
        return encode_event(data, event=event.event)


async def scrub_stream(chunks: AsyncIterator[bytes], backend: str = "") -> AsyncIterator[bytes]:
    """The execution stream with reasoning removed, re-encoded event by event."""
    parser = SSEParser(backend)
    scrubber = StreamScrubber()
    async for chunk in chunks:
        for event in parser.feed(chunk):
            yield scrubber.encode(event)
    for event in parser.close():
        yield scrubber.encode(event)
