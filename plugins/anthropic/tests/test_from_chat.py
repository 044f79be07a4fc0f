"""Canonical answers to Anthropic messages and events: one test per rule, and the event grammar."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from hookproxy import UpstreamError
from hookproxy.testing import chat_completion, chunk, content_stream
from hookproxy_anthropic.from_chat import render_events, render_message


def message(**choice_message):
    body = chat_completion("", model="up-model")
    body["choices"][0]["message"] = {"role": "assistant", **choice_message}
    return body


def render(body, stops=()):
    return render_message(orjson.dumps(body), "client-model", list(stops))


def test_text_reasoning_and_usage_excluding_cached_tokens():
    body = message(content="Hi", reasoning_content="Let me think")
    body["usage"] = {"prompt_tokens": 100, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 60}}
    reply = render(body)
    assert reply["type"] == "message" and reply["role"] == "assistant" and reply["model"] == "client-model"
    assert reply["content"] == [{"type": "thinking", "thinking": "Let me think", "signature": ""},
                                {"type": "text", "text": "Hi"}]
    assert reply["stop_reason"] == "end_turn" and reply["stop_sequence"] is None
    assert reply["usage"] == {"input_tokens": 40, "output_tokens": 7, "cache_read_input_tokens": 60,
                              "cache_creation_input_tokens": 0}


def test_deepseek_cache_hits_count_as_cache_reads():
    body = message(content="Hi")
    body["usage"] = {"prompt_tokens": 50, "completion_tokens": 1, "prompt_cache_hit_tokens": 30}
    assert render(body)["usage"]["input_tokens"] == 20


def test_tool_calls_become_tool_use_blocks_and_stop_with_tool_use_even_if_the_upstream_said_stop():
    calls = [{"id": "call_1", "type": "function", "function": {"name": "Bash", "arguments": '{"command": "ls"}'}},
             {"id": "call_2", "type": "function", "function": {"name": "Read", "arguments": ""}}]
    reply = render(message(content="", tool_calls=calls))
    assert reply["content"] == [{"type": "tool_use", "id": "call_1", "name": "Bash", "input": {"command": "ls"}},
                                {"type": "tool_use", "id": "call_2", "name": "Read", "input": {}}]
    assert reply["stop_reason"] == "tool_use"  # finish_reason was "stop"; no empty leading text block either


def test_arguments_that_are_not_a_json_object_are_kept():
    calls = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "not json"}}]
    assert render(message(content=None, tool_calls=calls))["content"][0]["input"] == {"_arguments": "not json"}


@pytest.mark.parametrize(("finish", "extra", "stops", "reason", "sequence"), [
    ("length", {}, [], "max_tokens", None),
    ("stop", {"stop_reason": "END"}, ["END"], "stop_sequence", "END"),
    ("stop", {"matched_stop": "###"}, ["###"], "stop_sequence", "###"),
    ("stop", {"stop_reason": 2}, ["END"], "end_turn", None),
    ("content_filter", {}, [], "refusal", None),
])
def test_finish_reasons(finish, extra, stops, reason, sequence):
    body = message(content="x")
    body["choices"][0].update(finish_reason=finish, **extra)
    reply = render(body, stops)
    assert (reply["stop_reason"], reply["stop_sequence"]) == (reason, sequence)


def test_an_empty_answer_is_an_error_not_an_empty_success():
    with pytest.raises(UpstreamError, match="empty message"):
        render(message(content=""))
    with pytest.raises(UpstreamError, match="without a choice"):
        render({"choices": []})


# --- streams ----------------------------------------------------------------------------------


def events(chunks, stops=()):
    async def source():
        for item in chunks:
            yield item if isinstance(item, bytes) else b"data: " + orjson.dumps(item) + b"\n\n"

    async def collect():
        return b"".join([piece async for piece in render_events(source(), "client-model", list(stops))])

    raw = asyncio.run(collect())
    parsed = []
    for frame in raw.decode().split("\n\n"):
        if frame:
            name, data = frame.split("\n", 1)
            assert name.startswith("event: ") and data.startswith("data: ")
            payload = orjson.loads(data[6:])
            assert payload["type"] == name[7:]
            parsed.append(payload)
    return parsed


def grammar(parsed):
    """The event sequence as compact names: ``start``, ``+0:text``, ``d0``, ``-0``, ``delta``, ``stop``."""
    names = []
    for item in parsed:
        kind = item["type"]
        if kind == "content_block_start":
            names.append(f"+{item['index']}:{item['content_block']['type']}")
        elif kind == "content_block_delta":
            names.append(f"d{item['index']}")
        elif kind == "content_block_stop":
            names.append(f"-{item['index']}")
        else:
            names.append({"message_start": "start", "message_delta": "delta", "message_stop": "stop"}[kind])
    return names


def test_a_text_stream_has_the_exact_grammar_and_usage_at_the_end():
    usage = {"id": "x", "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 3,
                                                 "prompt_tokens_details": {"cached_tokens": 2}}}
    parsed = events([*content_stream(["Hel", "lo"]), usage, b"data: [DONE]\n\n"])
    assert grammar(parsed) == ["start", "+0:text", "d0", "d0", "-0", "delta", "stop"]
    assert [p["delta"]["text"] for p in parsed if p["type"] == "content_block_delta"] == ["Hel", "lo"]
    assert parsed[0]["message"]["content"] == [] and parsed[0]["message"]["model"] == "client-model"
    assert parsed[-2]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert parsed[-2]["usage"]["input_tokens"] == 10 and parsed[-2]["usage"]["cache_read_input_tokens"] == 2


def test_reasoning_text_and_parallel_tool_calls_get_their_own_blocks_and_indexes():
    chunks = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"reasoning_content": "think "}), chunk({"reasoning_content": "more"}),
        chunk({"content": "I will run two."}),
        chunk({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                               "function": {"name": "Bash", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"command":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ' "ls"}'}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                               "function": {"name": "Read", "arguments": '{"path": "a"}'}}]}),
        chunk({}, "tool_calls"),
    ]
    parsed = events(chunks)
    assert grammar(parsed) == ["start", "+0:thinking", "d0", "d0", "-0", "+1:text", "d1", "-1",
                               "+2:tool_use", "d2", "d2", "-2", "+3:tool_use", "d3", "-3", "delta", "stop"]
    assert parsed[1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    assert all(p["delta"]["type"] != "signature_delta" for p in parsed if p["type"] == "content_block_delta")
    tool = parsed[8]["content_block"]
    assert tool == {"type": "tool_use", "id": "call_a", "name": "Bash", "input": {}}
    fragments = [p["delta"]["partial_json"] for p in parsed if p["type"] == "content_block_delta" and p["index"] == 2]
    assert fragments == ['{"command":', ' "ls"}']  # as they arrived, not only at the end
    assert parsed[-2]["delta"]["stop_reason"] == "tool_use"


def test_several_tool_calls_in_one_chunk_are_separate_blocks():
    calls = [{"index": i, "id": f"c{i}", "type": "function", "function": {"name": "f", "arguments": "{}"}}
             for i in range(2)]
    parsed = events([chunk({"tool_calls": calls}), chunk({}, "tool_calls")])
    assert grammar(parsed) == ["start", "+0:tool_use", "d0", "-0", "+1:tool_use", "d1", "-1", "delta", "stop"]


def test_empty_content_deltas_open_no_block():
    parsed = events([chunk({"role": "assistant", "content": ""}), chunk({"content": ""}),
                     chunk({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": "{}"}}]}),
                     chunk({}, "stop")])
    assert grammar(parsed)[:2] == ["start", "+0:tool_use"]


def test_a_matched_stop_sequence_is_reported():
    end = chunk({}, "stop")
    end["choices"][0]["stop_reason"] = "END"
    parsed = events([chunk({"content": "a"}), end], stops=["END"])
    assert parsed[-2]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "END"}


@pytest.mark.parametrize(("chunks", "message"), [
    ([chunk({"role": "assistant", "content": ""}), chunk({}, "stop")], "without any content"),
    ([chunk({"content": "cut"})], "before its finish_reason"),
    ([chunk({"content": "a"}), {"error": {"message": "boom"}}], "boom"),
])
def test_broken_streams_raise_so_the_client_gets_one_error_event(chunks, message):
    with pytest.raises(UpstreamError, match=message):
        events(chunks)


def test_a_late_fragment_for_a_closed_tool_block_is_an_error_not_lost_input():
    chunks = [chunk({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": "{"}}]}),
              chunk({"tool_calls": [{"index": 1, "id": "b", "function": {"name": "g", "arguments": "{}"}}]}),
              chunk({"tool_calls": [{"index": 0, "function": {"arguments": "}"}}]})]
    with pytest.raises(UpstreamError, match="tool call 0"):
        events(chunks)


def test_shortened_tool_names_are_restored_in_a_message():
    calls = [{"id": "c", "type": "function", "function": {"name": "short_1234abcd", "arguments": "{}"}}]
    body = orjson.dumps(message(content=None, tool_calls=calls))
    reply = render_message(body, "m", [], {"short_1234abcd": "a" * 80})
    assert reply["content"][0]["name"] == "a" * 80
