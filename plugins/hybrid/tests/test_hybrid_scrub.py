"""The cross-chunk tag filter: a tag split anywhere must never leak."""

from __future__ import annotations

import pytest

from hookproxy_hybrid.scrub import Scrubber, StreamScrubber, TagScanner, scrub_completion, scrub_text

TEXT = "<think>secret plan</think>Hello <b>world</b> and a < b, <THINKING attr='1'>x</Thinking>!"
CLEAN = "Hello <b>world</b> and a < b, !"


def feed_all(pieces):
    scrubber = Scrubber()
    return "".join(scrubber.feed(piece) for piece in pieces) + scrubber.flush()


def test_whole_text_is_scrubbed():
    assert scrub_text(TEXT) == CLEAN


@pytest.mark.parametrize("cut", range(1, len(TEXT)))
def test_a_split_at_any_position_does_not_leak(cut):
    assert feed_all([TEXT[:cut], TEXT[cut:]]) == CLEAN


def test_one_character_per_chunk_does_not_leak():
    assert feed_all(list(TEXT)) == CLEAN


@pytest.mark.parametrize("text", ["a <thinking-cap> b", "if x <think", "<reason", "x <", "<div>", "<thinkers>"])
def test_things_that_only_look_like_tags_survive(text):
    assert feed_all(list(text)) == text


def test_the_injection_phrase_is_removed():
    assert scrub_text("Consider this reasoning when formulating your response: ok") == " ok"


def test_scanner_reports_tags_and_text_in_order():
    scanner = TagScanner()
    tokens = scanner.feed("a<thi") + scanner.feed("nk>b</think>c<")
    assert tokens == [("text", "a"), ("open", "think"), ("text", "b"), ("close", "think"), ("text", "c")]
    assert scanner.flush() == "<"


def test_stream_events_lose_reasoning_content_and_flush_at_finish():
    scrubber = StreamScrubber()
    first = scrubber.event({"choices": [{"index": 0, "delta": {"content": "hi <thi", "reasoning_content": "r"}}]})
    assert first["choices"][0]["delta"] == {"content": "hi "}
    last = scrubber.event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    assert last["choices"][0]["delta"] == {"content": "<thi"}  # the stream ended: it was text after all


def test_a_completion_body_is_scrubbed():
    body = {"choices": [{"message": {"content": "<think>x</think>y", "reasoning_content": "z", "reasoning": "r"}}]}
    scrub_completion(body)
    assert body == {"choices": [{"message": {"content": "y"}}]}


def test_a_block_that_is_never_closed_is_given_back_at_the_end():
    assert scrub_text("Answer: <think>this never closes") == "Answer: this never closes"
    scrubber = Scrubber()
    streamed = scrubber.feed("<thi") + scrubber.feed("nk>kept") + scrubber.feed(" text")
    assert streamed == ""
    assert scrubber.flush() == "kept text"
