"""The official ``anthropic`` SDK against ``python -m hookproxy`` (every installed plugin loaded),
with a fake OpenAI-compatible upstream (``up``) and a fake Anthropic upstream (``claude``)."""

from __future__ import annotations

import anthropic
import httpx
import orjson
import pytest

from hookproxy.testing import Canned, FakeUpstream, chunk, content_stream
from hookproxy_anthropic.testing import FakeAnthropicUpstream

KEY = "sk-proxy-anthropic"
UPSTREAM_KEY = "sk-upstream-secret-456"
USER = [{"role": "user", "content": "Hello there"}]


@pytest.fixture
def proxy_url(cli_proxy: str) -> str:
    return cli_proxy


@pytest.fixture
def client(proxy_url: str, fake_upstream: FakeUpstream, claude_up: FakeAnthropicUpstream) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=proxy_url, api_key=KEY, max_retries=0)


def sent(upstream: FakeUpstream) -> dict:
    return upstream.requests_to()[-1].json


def test_non_streaming_text_through_an_openai_backend(client, fake_upstream):
    reply = client.messages.create(model="gpt-fake", max_tokens=64, system="Be brief.", messages=USER)
    assert reply.type == "message" and reply.role == "assistant" and reply.model == "gpt-fake"
    assert [block.type for block in reply.content] == ["text"] and reply.content[0].text == "echo: Hello there"
    assert reply.stop_reason == "end_turn" and reply.usage.output_tokens == 1
    assert sent(fake_upstream)["messages"] == [{"role": "system", "content": "Be brief."},
                                              {"role": "user", "content": "Hello there"}]
    assert sent(fake_upstream)["max_tokens"] == 64


def test_the_beta_endpoint_and_its_headers_are_accepted(client, fake_upstream):
    reply = client.beta.messages.create(model="gpt-fake", max_tokens=64, messages=USER,
                                        betas=["interleaved-thinking-2025-05-14", "claude-code-20250219"])
    assert reply.content[0].text == "echo: Hello there"


def test_streaming_gives_the_exact_event_sequence(client, fake_upstream):
    usage = {"id": "x", "object": "chat.completion.chunk", "choices": [],
             "usage": {"prompt_tokens": 9, "completion_tokens": 2}}
    fake_upstream.queue(Canned(sse=[*content_stream(["Hel", "lo"]), usage]))
    with client.messages.stream(model="gpt-fake", max_tokens=64, messages=USER) as stream:
        kinds = [event.type for event in stream if not event.type.startswith(("text", "thinking", "input_json"))]
        final = stream.get_final_message()
    assert kinds == ["message_start", "content_block_start", "content_block_delta", "content_block_delta",
                     "content_block_stop", "message_delta", "message_stop"]
    assert final.content[0].text == "Hello" and final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (9, 2)
    assert sent(fake_upstream)["stream_options"] == {"include_usage": True}


def test_a_tool_use_round_trip(client, fake_upstream):
    call = [{"index": 0, "id": "call_7", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]
    fake_upstream.queue(Canned(sse=[
        chunk({"role": "assistant", "content": "Checking."}), chunk({"tool_calls": call}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
        chunk({}, "tool_calls")]))
    tools = [{"name": "get_weather", "description": "weather", "input_schema": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
    with client.messages.stream(model="gpt-fake", max_tokens=64, messages=USER, tools=tools,
                                tool_choice={"type": "any"}) as stream:
        first = stream.get_final_message()
    assert [block.type for block in first.content] == ["text", "tool_use"]
    tool_use = first.content[1]
    assert (tool_use.id, tool_use.name, tool_use.input) == ("call_7", "get_weather", {"city": "Paris"})
    assert first.stop_reason == "tool_use"
    assert sent(fake_upstream)["tool_choice"] == "required"

    echoed = [block.model_dump(exclude_none=True) for block in first.content]
    history = [*USER, {"role": "assistant", "content": echoed},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_7", "content": "18 C"}]}]
    final = client.messages.create(model="gpt-fake", max_tokens=64, messages=history, tools=tools)
    assert final.content[0].text == "echo: Hello there"  # the fake echoes the last *user* message
    upstream_messages = sent(fake_upstream)["messages"]
    assert upstream_messages[1]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert upstream_messages[2] == {"role": "tool", "tool_call_id": "call_7", "content": "18 C"}


def test_a_bad_proxy_key_is_an_anthropic_authentication_error(proxy_url):
    bad = anthropic.Anthropic(base_url=proxy_url, api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        bad.messages.create(model="gpt-fake", max_tokens=8, messages=USER)
    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"]["type"] == "authentication_error"


def test_invalid_requests_are_400_invalid_request_error(client, proxy_url, fake_upstream):
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model="gpt-fake", max_tokens=8, messages=[{"role": "user", "content": [
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}]}])
    assert caught.value.body["error"] == {
        "type": "invalid_request_error",
        "message": "messages.0.content.0: content block type 'document' cannot be sent to this backend: it has no "
                   "chat-completions equivalent, and dropping it would change the request"}
    missing = httpx.post(proxy_url + "/v1/messages", headers={"x-api-key": KEY},
                         json={"model": "gpt-fake", "messages": USER})
    assert missing.status_code == 400 and "max_tokens" in missing.json()["error"]["message"]
    assert fake_upstream.requests == []


def test_upstream_rate_limits_keep_retry_after_and_overload_is_529(client, fake_upstream):
    fake_upstream.queue(Canned(status=429, json={"error": {"message": "slow down"}}, headers={"Retry-After": "120"}))
    with pytest.raises(anthropic.RateLimitError) as limited:
        client.messages.create(model="gpt-fake", max_tokens=8, messages=USER)
    assert limited.value.response.headers["retry-after"] == "120"
    assert limited.value.body["error"] == {"type": "rate_limit_error", "message": "slow down"}
    fake_upstream.queue(*[Canned(status=503, json={"error": {"message": "busy"}})] * 2)
    with pytest.raises(anthropic.InternalServerError) as overloaded:
        client.messages.create(model="gpt-fake", max_tokens=8, messages=USER)
    assert overloaded.value.status_code == 529
    assert overloaded.value.body["error"]["type"] == "overloaded_error"


def test_an_error_after_the_first_byte_is_one_error_event(proxy_url, fake_upstream):
    fake_upstream.queue(Canned(sse=[chunk({"content": "par"}), {"error": {"message": "upstream fell over"}}],
                               done=False))
    with httpx.stream("POST", proxy_url + "/v1/messages?beta=true", headers={"x-api-key": KEY},
                      json={"model": "gpt-fake", "max_tokens": 8, "messages": USER, "stream": True}) as response:
        frames = [frame for frame in response.read().decode().split("\n\n") if frame]
    assert response.status_code == 200
    assert frames[0].startswith("event: message_start")
    assert frames[-1].startswith("event: error\ndata: ")
    error = orjson.loads(frames[-1].split("data: ", 1)[1])
    assert error["type"] == "error" and "upstream fell over" in error["error"]["message"]
    assert sum(frame.startswith("event: error") for frame in frames) == 1
    assert not any(frame.startswith("event: message_stop") for frame in frames)


def test_an_empty_upstream_answer_is_never_an_empty_success(client, fake_upstream):
    fake_upstream.queue(Canned(json={"choices": [{"index": 0, "message": {"role": "assistant", "content": ""},
                                                  "finish_reason": "stop"}]}))
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(model="gpt-fake", max_tokens=8, messages=USER)
    assert caught.value.status_code == 502 and caught.value.body["error"]["type"] == "api_error"


def test_count_tokens_estimates_for_chat_backends_and_asks_anthropic_backends(client, claude_up):
    estimate = client.messages.count_tokens(model="gpt-fake", messages=[{"role": "user", "content": "x" * 400}])
    assert estimate.input_tokens == 4 + 100
    cjk = client.messages.count_tokens(model="gpt-fake", messages=[{"role": "user", "content": "你好世界"}])
    assert cjk.input_tokens == 4 + 4
    exact = client.messages.count_tokens(model="claude:claude-fake", messages=USER, system="s")
    assert exact.input_tokens == 42
    assert claude_up.requests[-1].path == "/v1/messages/count_tokens"
    assert claude_up.requests[-1].json == {"model": "claude-fake", "messages": USER, "system": "s"}


def test_models_in_anthropic_shape_with_anthropic_version_and_a_public_warm_up(client, proxy_url):
    ids = [model.id for model in client.models.list()]
    assert "up:gpt-fake" in ids and "claude:claude-fake" in ids
    openai_list = httpx.get(proxy_url + "/v1/models", headers={"authorization": f"Bearer {KEY}"}).json()
    assert openai_list["object"] == "list"
    assert httpx.head(proxy_url + "/").status_code == 200


def test_one_model_in_anthropic_shape_and_an_unknown_one_is_anthropics_404(client, proxy_url):
    model = client.models.retrieve("claude:claude-fake")
    assert (model.type, model.id, model.display_name) == ("model", "claude:claude-fake", "claude:claude-fake")
    assert model.created_at.year == 1970
    assert client.beta.models.retrieve("up:gpt-fake").id == "up:gpt-fake"

    with pytest.raises(anthropic.NotFoundError) as missing:
        client.models.retrieve("up:no-such-model")
    assert missing.value.body == {"type": "error", "error": {
        "type": "not_found_error",
        "message": "model 'up:no-such-model' is not listed by any usable backend; GET /v1/models lists them"}}

    openai_model = httpx.get(proxy_url + "/v1/models/up:gpt-fake", headers={"authorization": f"Bearer {KEY}"})
    assert openai_model.json()["object"] == "model"  # no anthropic-version: the core's OpenAI shape
    anonymous = httpx.get(proxy_url + "/v1/models/up:gpt-fake", headers={"anthropic-version": "2023-06-01"})
    assert anonymous.status_code == 401 and anonymous.json()["type"] == "error"


def test_tool_names_over_64_characters_are_shortened_upstream_and_restored(client, fake_upstream):
    long_name = "mcp__a_very_long_server_name_for_testing__and_an_even_longer_tool_name_here"
    assert len(long_name) > 64
    tools = [{"name": long_name, "input_schema": {"type": "object"}}]
    history = [*USER, {"role": "assistant", "content": [{"type": "tool_use", "id": "t0", "name": long_name,
                                                         "input": {}}]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t0", "content": "done"}]}]

    def answer(request):
        short = request.json["tools"][0]["function"]["name"]
        call = {"index": 0, "id": "call_9", "type": "function", "function": {"name": short, "arguments": "{}"}}
        return Canned(sse=[chunk({"tool_calls": [call]}), chunk({}, "tool_calls")])

    fake_upstream.handler = answer
    with client.messages.stream(model="gpt-fake", max_tokens=64, messages=history, tools=tools,
                                tool_choice={"type": "tool", "name": long_name}) as stream:
        final = stream.get_final_message()
    assert final.content[0].name == long_name
    sent_body = sent(fake_upstream)
    short = sent_body["tools"][0]["function"]["name"]
    assert len(short) == 64 and short.startswith(long_name[:55])
    assert sent_body["tool_choice"]["function"]["name"] == short
    assert sent_body["messages"][1]["tool_calls"][0]["function"]["name"] == short
