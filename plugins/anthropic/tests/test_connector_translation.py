"""Chat to Anthropic and back (OpenAI clients of the ``anthropic`` connector), rule by rule."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from hookproxy import InvalidRequest, UpstreamError, UpstreamStream, encode_event
from hookproxy_anthropic.from_messages import anthropic_error, chat_chunks, chat_completion
from hookproxy_anthropic.testing import message, text_events, tool_events
from hookproxy_anthropic.to_messages import to_messages


def request(**fields):
    return to_messages({"model": "claude-x", "messages": [{"role": "user", "content": "hi"}], **fields}, 8192)


def test_system_and_developer_messages_become_the_system_prompt():
    body = request(messages=[{"role": "system", "content": "rule 1"}, {"role": "user", "content": "q"},
                             {"role": "developer", "content": [{"type": "text", "text": "rule 2"}]}])
    assert body["system"] == "rule 1\n\nrule 2"
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "q"}]}]


def test_max_tokens_defaults_and_sampling_fields_carry_over():
    assert request()["max_tokens"] == 8192
    body = request(max_completion_tokens=50, temperature=0.5, top_p=0.8, stop="END", user="u1", stream=True,
                   n=1, logprobs=False, response_format={"type": "text"}, stream_options={"include_usage": True})
    assert {k: body[k] for k in ("max_tokens", "temperature", "top_p", "stop_sequences", "metadata", "stream")} == {
        "max_tokens": 50, "temperature": 0.5, "top_p": 0.8, "stop_sequences": ["END"],
        "metadata": {"user_id": "u1"}, "stream": True}
    assert not {"n", "logprobs", "response_format", "stream_options"} & set(body)


def test_tool_calls_and_consecutive_tool_messages_become_one_turn_of_results_in_order():
    messages = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": None, "reasoning_content": "unsigned thoughts", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "Bash", "arguments": '{"command": "ls"}'}},
            {"id": "c2", "type": "function", "function": {"name": "Read", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "a.txt"},
        {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "line"}]},
        {"role": "user", "content": "and?"},
    ]
    body = request(messages=messages)
    assert body["messages"][1] == {"role": "assistant", "content": [
        {"type": "tool_use", "id": "c1", "name": "Bash", "input": {"command": "ls"}},
        {"type": "tool_use", "id": "c2", "name": "Read", "input": {}}]}  # unsigned reasoning dropped
    assert body["messages"][2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "c1", "content": "a.txt"},
        {"type": "tool_result", "tool_use_id": "c2", "content": "line"},
        {"type": "text", "text": "and?"}]}


def test_images_empty_text_and_unknown_parts():
    content = [{"type": "text", "text": ""}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
               {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]
    assert request(messages=[{"role": "user", "content": content}])["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}},
        {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}]
    with pytest.raises(InvalidRequest, match="input_audio"):
        request(messages=[{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}])


@pytest.mark.parametrize(("choice", "expected"), [
    ("auto", {"type": "auto"}), ("required", {"type": "any"}), ("none", {"type": "none"}),
    ({"type": "function", "function": {"name": "f"}}, {"type": "tool", "name": "f"}),
])
def test_tools_and_tool_choice(choice, expected):
    tools = [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}}]
    body = request(tools=tools, tool_choice=choice)
    assert body["tools"] == [{"name": "f", "input_schema": {"type": "object"}, "description": "d"}]
    assert body["tool_choice"] == expected
    assert request(tools=tools, parallel_tool_calls=False)["tool_choice"] == {
        "type": "auto", "disable_parallel_tool_use": True}


def test_reasoning_effort_becomes_a_thinking_budget_below_max_tokens():
    assert request(reasoning_effort="medium")["thinking"] == {"type": "enabled", "budget_tokens": 8192 - 1}
    assert request(reasoning_effort="low")["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert "thinking" not in request(reasoning_effort="none")
    assert "thinking" not in request(reasoning_effort="high", max_tokens=500)


def test_a_message_becomes_a_chat_completion():
    body = message(content=[{"type": "thinking", "thinking": "hmm", "signature": "s"},
                            {"type": "text", "text": "Hello"},
                            {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls"}}],
                   stop_reason="tool_use",
                   usage={"input_tokens": 5, "output_tokens": 3, "cache_read_input_tokens": 10})
    completion = orjson.loads(chat_completion(orjson.dumps(body)))
    choice = completion["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "Hello", "reasoning_content": "hmm", "tool_calls": [
        {"id": "t1", "type": "function", "function": {"name": "Bash", "arguments": '{"command":"ls"}'}}]}
    assert choice["finish_reason"] == "tool_calls"
    assert completion["usage"] == {"prompt_tokens": 15, "completion_tokens": 3, "total_tokens": 18,
                                   "prompt_tokens_details": {"cached_tokens": 10}}


def chunks_of(events):
    async def source():
        for item in events:
            yield encode_event(item, event=item["type"])

    async def collect():
        return [piece async for piece in chat_chunks(UpstreamStream(source()))]

    raw = b"".join(asyncio.run(collect())).decode()
    return [orjson.loads(line[6:]) for line in raw.split("\n\n") if line.startswith("data: {")], raw


def test_an_event_stream_becomes_chunks_with_reasoning_text_usage_and_done():
    parsed, raw = chunks_of(text_events(["Hel", "lo"], thinking=["hm"]))
    deltas = [c["choices"][0]["delta"] for c in parsed if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert [d.get("reasoning_content") for d in deltas if "reasoning_content" in d] == ["hm"]
    assert "".join(d.get("content") or "" for d in deltas) == "Hello"
    assert parsed[-2]["choices"][0]["finish_reason"] == "stop"
    assert parsed[-1]["choices"] == [] and parsed[-1]["usage"]["completion_tokens"] == 2
    assert raw.endswith("data: [DONE]\n\n") and "sig-fake" not in raw


def test_tool_use_events_become_streamed_tool_call_deltas():
    parsed, _ = chunks_of(tool_events([("t1", "Bash", ['{"comm', 'and": "ls"}']), ("t2", "Read", ["{}"])]))
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in parsed if c["choices"]
             and c["choices"][0]["delta"].get("tool_calls")]
    assert calls[0] == {"index": 0, "id": "t1", "type": "function", "function": {"name": "Bash", "arguments": ""}}
    assert [c["function"]["arguments"] for c in calls[1:3]] == ['{"comm', 'and": "ls"}']
    assert calls[3]["index"] == 1 and calls[3]["id"] == "t2"
    assert parsed[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_an_error_event_keeps_its_meaning_and_a_cut_stream_is_an_error():
    events = [*text_events(["a"])[:3], {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}]
    with pytest.raises(UpstreamError, match="busy") as caught:
        chunks_of(events)
    assert caught.value.status == 529
    with pytest.raises(UpstreamError, match="before message_stop"):
        chunks_of(text_events(["a"])[:4])


def test_anthropic_error_bodies_keep_message_type_and_retry_after():
    raw = orjson.dumps({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}})
    error = anthropic_error("claude", 429, {"retry-after": "7"}, raw)
    assert (error.status, error.message, error.retry_after) == (429, "slow down", 7.0)
    assert error.body() == {"error": {"message": "slow down", "type": "rate_limit_error", "param": None,
                                      "code": None}}
    openai_style = anthropic_error("claude", 500, {}, b'{"error": {"message": "oops", "type": "server_error"}}')
    assert openai_style.message == "oops"
