"""The official openai SDK's ``client.responses.create`` against hookproxy started by its CLI."""

from __future__ import annotations

import httpx
import openai
import pytest

from hookproxy.testing import Canned, chat_completion, chunk, content_stream

WEATHER = {"type": "function", "name": "get_weather", "description": "Weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def test_a_plain_answer_with_usage(sdk, fake_upstream):
    usage = {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11,
             "prompt_tokens_details": {"cached_tokens": 3}}
    fake_upstream.queue(Canned(json=chat_completion("Bonjour.", usage=usage)))
    response = sdk.responses.create(model="m1", input="Say hello in French", instructions="Be brief.")
    assert response.output_text == "Bonjour." and response.status == "completed"
    assert response.id.startswith("resp_") and response.output[0].id.startswith("msg_")
    assert response.usage.input_tokens == 9 and response.usage.input_tokens_details.cached_tokens == 3
    assert response.usage.output_tokens == 2 and response.usage.total_tokens == 11
    assert response.usage.output_tokens_details.reasoning_tokens == 0
    assert response.instructions == "Be brief."
    assert fake_upstream.requests_to()[0].json == {"model": "m1", "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello in French"}]}


def test_a_streamed_answer_through_the_sdk_stream_helper(sdk, fake_upstream, kit):
    fake_upstream.queue(Canned(sse=[*content_stream(["Hel", "lo", "!"]), kit.usage_chunk(5, 3)]))
    with sdk.responses.stream(model="m1", input="Hi") as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert deltas == ["Hel", "lo", "!"]
    assert final.output_text == "Hello!" and final.usage.total_tokens == 8
    sent = fake_upstream.requests_to()[0].json
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


def test_a_function_tool_round_trip(sdk, fake_upstream, kit):
    fake_upstream.queue(kit.tool_call_stream(("call_w", "get_weather", ['{"city"', ': "Paris"}'])),
                        Canned(sse=content_stream(["Sunny in Paris."])))
    events = list(sdk.responses.create(model="m1", input="Weather in Paris?", tools=[WEATHER], stream=True))
    kinds = [event.type for event in events]
    assert kinds.count("response.function_call_arguments.delta") == 2
    assert kinds[-1] == "response.completed"
    call = events[-1].response.output[0]
    assert call.type == "function_call" and call.name == "get_weather" and call.call_id == "call_w"
    assert call.arguments == '{"city": "Paris"}'
    usage = events[-1].response.usage
    assert (usage.input_tokens, usage.input_tokens_details.cached_tokens, usage.output_tokens,
            usage.output_tokens_details.reasoning_tokens, usage.total_tokens) == (12, 4, 7, 2, 19)

    history = [{"role": "user", "content": "Weather in Paris?"}, call.model_dump(exclude_none=True),
               {"type": "function_call_output", "call_id": "call_w", "output": '{"sky": "clear"}'}]
    final = sdk.responses.create(model="m1", input=history, tools=[WEATHER], stream=True)
    text = "".join(event.delta for event in final if event.type == "response.output_text.delta")
    assert text == "Sunny in Paris."
    messages = fake_upstream.requests_to()[1].json["messages"]
    assert messages[1] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_w", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}
    assert messages[2] == {"role": "tool", "tool_call_id": "call_w", "content": '{"sky": "clear"}'}


def test_a_non_streamed_tool_call_and_custom_tool_call(sdk, fake_upstream):
    message = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
        {"id": "call_2", "type": "function", "function": {"name": "apply_patch",
                                                          "arguments": '{"input": "*** Begin Patch\\n"}'}}]}
    fake_upstream.queue(Canned(json=chat_completion("", choices=[
        {"index": 0, "message": message, "finish_reason": "tool_calls"}])))
    response = sdk.responses.create(model="m1", input="go", tools=[WEATHER, {"type": "custom", "name": "apply_patch"}])
    assert [item.type for item in response.output] == ["function_call", "custom_tool_call"]
    assert response.output[1].input == "*** Begin Patch\n" and response.output[1].call_id == "call_2"
    assert response.output[0].id != response.output[1].id


def test_errors_before_the_stream_keep_the_openai_shape_and_retry_after(sdk, fake_upstream):
    fake_upstream.queue(Canned(status=429, headers={"retry-after": "120"},
                               json={"error": {"message": "Too many requests", "type": "rate_limit_error"}}))
    with pytest.raises(openai.RateLimitError) as raised:
        sdk.responses.create(model="m1", input="x", stream=True)
    assert raised.value.response.headers["retry-after"] == "120"
    assert raised.value.body["message"] == "Too many requests"
    with pytest.raises(openai.BadRequestError, match="'input' must be a string or an array"):
        sdk.responses.create(model="m1", input=7)  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError, match="--responses-store") as stateful:
        sdk.responses.create(model="m1", input="x", previous_response_id="resp_123")
    assert stateful.value.body["param"] == "previous_response_id"


def test_a_failure_after_the_stream_started_is_response_failed(sdk, fake_upstream):
    fake_upstream.queue(Canned(sse=[chunk({"role": "assistant", "content": "Par"})], done=False, reset_after=1))
    events = list(sdk.responses.create(model="m1", input="x", stream=True))
    assert events[-1].type == "response.failed"
    assert events[-1].response.error.code == "server_error"
    assert [event.sequence_number for event in events] == list(range(len(events)))


def test_a_missing_proxy_key_is_a_401_openai_error(proxy_url):
    answer = httpx.post(proxy_url + "/v1/responses", json={"model": "m1", "input": "x"})
    assert answer.status_code == 401 and answer.json()["error"]["type"] == "authentication_error"
