"""Reasoning capture, injection and the run-or-skip decision, without servers."""

from __future__ import annotations

import asyncio
import copy

import orjson
import pytest

from hookproxy import Reply
from hookproxy.testing import chunk, content_stream
from hookproxy_hybrid.policy import HybridSettings, LatencyBackoff, decide, request_probability
from hookproxy_hybrid.reasoning import MAX_CHARS, Capture, inject, wrap


def sse_bytes(events, split=7, done=True):
    raw = b"".join(b"data: " + orjson.dumps(event) + b"\n\n" for event in events) + (b"data: [DONE]\n\n" * done)
    return [raw[i : i + split] for i in range(0, len(raw), split)]  # events cut mid-way on purpose


class FakeReply:
    """A streamed reply that records when it was closed and whether more was read after that."""

    def __init__(self, pieces, *, hang=False):
        self.closed_at = None
        self.read = 0
        self._pieces, self._hang = pieces, hang

    async def chunks(self):
        for piece in self._pieces:
            self.read += 1
            yield piece
        if self._hang:
            await asyncio.sleep(30)

    def reply(self):
        async def close():
            self.closed_at = self.read

        return Reply(chunks=self.chunks(), close=close)


async def capture(pieces, *, hang=False, timeout=5.0):
    fake = FakeReply(pieces, hang=hang)
    run = Capture(fake.reply(), asyncio.get_running_loop().time() + timeout)
    got = [piece async for piece in run.pieces()]
    return run, got, fake


async def test_think_tags_split_across_events_and_reads_are_captured_and_closed_at_the_tag():
    events = content_stream(["<thi", "nk>a ", "b</thi", "nk>answer", *["x"] * 50])
    run, got, fake = await capture(sse_bytes(events))
    assert "".join(got) == "a b" and run.text == "a b"
    assert run.stop_reason == "closing_tag"
    assert fake.closed_at is not None and fake.closed_at < len(sse_bytes(events))


async def test_untagged_content_counts_until_finish_reason():
    run, _, _ = await capture(sse_bytes(content_stream(["just ", "thinking"])))
    assert (run.text, run.stop_reason) == ("just thinking", "finish_reason")


async def test_the_size_limit_stops_the_capture():
    run, _, _ = await capture(sse_bytes(content_stream(["<think>", *["y" * 1000] * 20]), split=4096))
    assert (len(run.text), run.stop_reason) == (MAX_CHARS, "size_limit")


async def test_a_transition_marker_after_1000_chars_stops_the_capture():
    run, _, _ = await capture(sse_bytes(content_stream(["z" * 1001, " Therefore, do it", "more"])))
    assert run.stop_reason == "transition_marker" and "more" not in run.text


async def test_the_deadline_covers_the_whole_capture():
    run, got, _ = await capture(sse_bytes([chunk({"content": "<think>slow"})], done=False), hang=True, timeout=0.3)
    assert got == ["slow"] and run.timed_out


async def test_a_broken_stream_keeps_what_was_captured():
    async def broken():
        yield b'data: {"choices":[{"delta":{"reasoning_content":"half"}}]}\n\n'
        raise OSError("reset")

    async def close():
        return None

    run = Capture(Reply(chunks=broken(), close=close), asyncio.get_running_loop().time() + 5)
    assert [piece async for piece in run.pieces()] == ["half"]
    assert (run.text, run.stop_reason) == ("half", "error")


async def test_error_chunks_are_skipped_and_tool_calls_merged():
    events = [{"error": {"message": "x"}},
              chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{"}}]}),
              chunk({"tool_calls": [{"index": 0, "id": "other", "function": {"name": "g", "arguments": "}"}}]}),
              chunk({}, "tool_calls")]
    run, got, _ = await capture(sse_bytes(events))
    assert got == [] and run.tool_calls.as_list(with_index=False) == [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]


async def test_a_non_streamed_reasoning_reply_is_used_too():
    body = {"choices": [{"message": {"reasoning_content": "r", "content": "answer"}, "finish_reason": "stop"}]}

    async def close():
        return None

    run = Capture(Reply(body=orjson.dumps(body), close=close), asyncio.get_running_loop().time() + 5)
    assert [piece async for piece in run.pieces()] == ["r"]


def test_wrap_puts_multiline_bodies_on_their_own_lines():
    assert wrap("a", "think") == "<think>a</think>"
    assert wrap("a\nb", "thinking") == "<thinking>\na\nb\n</thinking>"


def test_inject_never_mutates_the_clients_messages():
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": [{"type": "text", "text": "U"}]}]
    before = copy.deepcopy(messages)
    out = inject(messages, "R", "thinking", system_messages=True, repeat=True)
    assert messages == before
    assert out[0]["content"] == "S\n\nConsider this reasoning when formulating your response:\n\n<thinking>R</thinking>"
    assert out[-1]["role"] == "assistant"
    assert inject(messages, "", "thinking", system_messages=True, repeat=True) == before


def test_without_system_messages_the_reasoning_prefixes_the_first_user_message():
    messages = [{"role": "user", "content": "U"}, {"role": "user", "content": "V"}]
    out = inject(messages, "R", "reasoning", system_messages=False, repeat=False)
    assert out[0]["content"].endswith("<reasoning>R</reasoning>\n\nU")
    assert out[1] == {"role": "user", "content": "V"}
    listed = inject([{"role": "user", "content": [{"type": "text", "text": "U"}]}], "R", "think",
                    system_messages=False, repeat=False)
    assert listed[0]["content"][1] == {"type": "text", "text": "U"}


def user(n):
    return [{"role": "user", "content": str(i)} for i in range(n)]


@pytest.mark.parametrize(("p", "turns", "roll", "expected"), [
    (0.0, 1, 0.0, (False, "probability")),       # p = 0 means never, even on the first turn
    (0.1, 4, 0.99, (True, "initial_turns")),     # forced while turns <= 4
    (0.1, 5, 0.99, (False, "probability")),
    (0.5, 5, 0.4, (True, "probability")),
    (1.0, 9, 0.999, (True, "probability")),
])
def test_the_decision(p, turns, roll, expected):
    decision = decide(user(turns), p, 4, rng=lambda: roll)
    assert (decision.run, decision.reason) == expected


def test_latency_backoff_skips_the_next_non_forced_turns_of_that_conversation():
    backoff = LatencyBackoff()
    settings = HybridSettings(hybrid_reasoning_latency_threshold=1.0, hybrid_reasoning_backoff_turns=2)
    messages = user(6)
    key = LatencyBackoff.key(messages)
    backoff.record(key, 5.0, settings)
    results = [decide(messages, 1.0, 4, backoff=lambda: backoff.use_skip(key)).reason for _ in range(3)]
    assert results == ["latency_backoff", "latency_backoff", "probability"]
    assert decide(user(1), 1.0, 4, backoff=lambda: backoff.use_skip(key)).run  # forced turns ignore it


def test_the_per_request_probability_override():
    assert request_probability({"extra_body": {"_temp_hybrid_reasoning_probability": 0}}, 1.0) == 0.0
    assert request_probability({"_temp_hybrid_reasoning_probability": "0.25"}, 1.0) == 0.25
    assert request_probability({"_temp_hybrid_reasoning_probability": 7}, 1.0) == 1.0
