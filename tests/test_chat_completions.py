"""/v1/chat/completions through the official openai SDK: what clients and agents depend on."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from hookproxy.testing import Canned, chat_completion, chunk, content_stream
from tests.conftest import PROXY_KEY, UPSTREAM_KEY

USER = [{"role": "user", "content": "hello"}]


@pytest.fixture
def sdk(proxy_for):
    running = proxy_for()
    return openai.OpenAI(base_url=running.url + "/v1", api_key=PROXY_KEY, max_retries=0)


def test_non_streaming_completion_reaches_the_default_backend(sdk, fake_upstream):
    reply = sdk.chat.completions.create(model="m1", messages=USER)
    assert reply.choices[0].message.content == "echo: hello"
    sent = fake_upstream.requests_to()[-1]
    assert sent.json["model"] == "m1"
    assert sent.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert sent.headers["x-hookproxy-loop-guard"] == "1"


def test_streaming_completion_relays_every_event(sdk, fake_upstream):
    fake_upstream.queue(Canned(sse=content_stream(["Hel", "lo", "!"]), delay=0.01))
    stream = sdk.chat.completions.create(model="up:m2", messages=USER, stream=True)
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello!"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert fake_upstream.requests_to()[-1].json["stream"] is True


def test_every_openai_field_passes_through_untouched_and_only_the_model_changes(sdk, fake_upstream):
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "d", "strict": True,
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                             "required": ["city"], "additionalProperties": False}}}]
    sdk.chat.completions.create(
        model="up:m1", messages=USER, tools=tools, tool_choice="auto", response_format={"type": "json_object"},
        n=2, stop=["END"], seed=7, logprobs=True, top_logprobs=2, max_tokens=5,
        stream_options=None, extra_body={"my_vendor_field": {"nested": [1, 2]}, "reasoning_effort": "low"},
    )
    sent = fake_upstream.requests_to()[-1].json
    assert sent["model"] == "m1"
    assert sent["tools"] == tools
    assert sent["tool_choice"] == "auto"
    assert sent["response_format"] == {"type": "json_object"}
    assert (sent["n"], sent["stop"], sent["seed"], sent["logprobs"], sent["top_logprobs"]) == (2, ["END"], 7, True, 2)
    assert sent["my_vendor_field"] == {"nested": [1, 2]}
    assert sent["reasoning_effort"] == "low"


def test_tool_calls_come_back_to_the_sdk(sdk, fake_upstream):
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
    body = chat_completion("", model="m1")
    body["choices"][0]["message"] = {"role": "assistant", "content": None, "tool_calls": [call]}
    body["choices"][0]["finish_reason"] = "tool_calls"
    fake_upstream.queue(Canned(json=body))
    reply = sdk.chat.completions.create(model="m1", messages=USER, tools=[{"type": "function", "function": {
        "name": "get_weather", "parameters": {"type": "object", "properties": {}}}}])
    assert reply.choices[0].finish_reason == "tool_calls"
    assert reply.choices[0].message.tool_calls[0].function.arguments == '{"city":"Paris"}'


def test_streamed_tool_call_deltas_come_back_to_the_sdk(sdk, fake_upstream):
    events = [
        chunk({"role": "assistant", "content": None, "tool_calls": [
            {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
        chunk({}, "tool_calls"),
    ]
    fake_upstream.queue(Canned(sse=events))
    stream = sdk.chat.completions.create(model="m1", messages=USER, stream=True)
    arguments = ""
    finish = None
    for part in stream:
        for tool_call in part.choices[0].delta.tool_calls or []:
            arguments += tool_call.function.arguments or ""
        finish = part.choices[0].finish_reason or finish
    assert json.loads(arguments) == {"city": "Paris"}
    assert finish == "tool_calls"


def test_uri_parameters_beat_the_body_and_the_upstream_sees_a_clean_model(sdk, fake_upstream):
    sdk.chat.completions.create(model="up:m1?temperature=0.3&top_k=40.0", messages=USER, temperature=0.9)
    sent = fake_upstream.requests_to()[-1].json
    assert sent["model"] == "m1"
    assert sent["temperature"] == 0.3
    assert sent["top_k"] == 40


def test_invalid_uri_parameters_are_dropped_with_a_warning_not_an_error(sdk, fake_upstream, caplog):
    sdk.chat.completions.create(model="up:m1?temperature=3.5&bogus=1", messages=USER, temperature=0.9)
    sent = fake_upstream.requests_to()[-1].json
    assert sent["temperature"] == 0.9
    assert "bogus" not in sent
    assert "temperature" in caplog.text and "above maximum" in caplog.text
    assert "Unknown URI parameter 'bogus'" in caplog.text
    caplog.clear()  # every request is told, not only the first with that selector
    sdk.chat.completions.create(model="up:m1?temperature=3.5&bogus=1", messages=USER)
    assert "Unknown URI parameter 'bogus'" in caplog.text


def test_chinese_text_split_inside_a_character_survives_the_stream(sdk, fake_upstream):
    text = "你好，世界"
    payload = b"".join(
        b"data: " + json.dumps(chunk({"content": ch}), ensure_ascii=False).encode() + b"\n\n" for ch in text
    ) + b"data: [DONE]\n\n"
    # Cut every 5 bytes: multi-byte characters and events are split across network reads.
    pieces = [payload[i:i + 5] for i in range(0, len(payload), 5)]
    fake_upstream.queue(Canned(chunks=pieces))
    stream = sdk.chat.completions.create(model="m1", messages=[{"role": "user", "content": "你好"}], stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream) == text
    assert fake_upstream.requests_to()[-1].json["messages"][0]["content"] == "你好"


def test_upstream_error_status_and_message_reach_the_client(sdk, fake_upstream):
    error = {"message": "bad tool schema", "type": "invalid_request_error", "param": "tools", "code": None}
    fake_upstream.queue(Canned(status=400, json={"error": error}))
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model="m1", messages=USER)
    assert caught.value.status_code == 400
    assert caught.value.body["message"] == "bad tool schema"


def test_upstream_429_keeps_its_status_and_retry_after(proxy_for, fake_upstream):
    running = proxy_for({"failure_handling": {"max_silent_wait": 0}})
    fake_upstream.queue(Canned(status=429, headers={"retry-after": "60"},
                               json={"error": {"message": "slow down", "type": "rate_limit_error"}}))
    response = httpx.post(running.url + "/v1/chat/completions", json={"model": "m1", "messages": USER},
                          headers={"authorization": f"Bearer {PROXY_KEY}"})
    assert response.status_code == 429
    assert response.json()["error"]["message"] == "slow down"
    assert response.headers["retry-after"] == "60"


def test_force_model_replaces_every_model(proxy_for, fake_upstream):
    running = proxy_for(cli={"force_model": "up:m2"})
    sdk = openai.OpenAI(base_url=running.url + "/v1", api_key=PROXY_KEY, max_retries=0)
    sdk.chat.completions.create(model="whatever", messages=USER)
    assert fake_upstream.requests_to()[-1].json["model"] == "m2"


def test_response_headers_name_the_backend_and_model(proxy_for):
    running = proxy_for()
    response = httpx.post(running.url + "/v1/chat/completions", json={"model": "up:m2", "messages": USER},
                          headers={"authorization": f"Bearer {PROXY_KEY}"})
    assert response.headers["x-hookproxy-backend"] == "up"
    assert response.headers["x-hookproxy-model"] == "m2"
    assert response.headers["content-type"].startswith("application/json")


def test_an_upstream_that_ignores_stream_still_streams_to_the_sdk(sdk, fake_upstream):
    body = chat_completion("whole answer", model="m1")
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    body["choices"].append({"index": 1, "message": {"role": "assistant", "content": None, "tool_calls": [call]},
                            "finish_reason": "tool_calls"})
    fake_upstream.queue(Canned(json=body))
    chunks = list(sdk.chat.completions.create(model="m1", messages=USER, stream=True))
    by_index = {choice.index: choice for part in chunks for choice in part.choices}
    assert by_index[0].delta.content == "whole answer" and by_index[0].finish_reason == "stop"
    assert by_index[1].delta.tool_calls[0].function.name == "f"
    assert chunks[0].usage.total_tokens == 2


def test_models_can_be_listed_and_retrieved_by_the_sdk(sdk):
    ids = [model.id for model in sdk.models.list()]
    assert ids == ["up:m1", "up:m2"]
    assert sdk.models.retrieve("up:m2").owned_by == "up"
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("up:nope")
