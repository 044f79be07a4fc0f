"""Anthropic requests to the canonical chat body: one test per translation rule."""

from __future__ import annotations

import pytest

from hookproxy import InvalidRequest
from hookproxy_anthropic.to_chat import to_chat


def chat(stream: bool = False, **fields):
    body = {"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}], **fields}
    return to_chat(body, stream=stream)


def test_system_string_and_blocks_become_one_system_message_without_cache_control():
    assert chat(system="Be brief.")["messages"][0] == {"role": "system", "content": "Be brief."}
    blocks = [{"type": "text", "text": "billing line"}, {"type": "text", "text": ""},
              {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]
    assert chat(system=blocks)["messages"][0] == {"role": "system", "content": "billing line\n\nBe brief."}


def test_system_entries_inside_messages_become_system_messages_in_place():
    messages = [{"role": "user", "content": "a"}, {"role": "system", "content": "mid-conversation rule"},
                {"role": "assistant", "content": "b"}, {"role": "system", "content": [{"type": "text", "text": "c"}]}]
    assert [m["role"] for m in chat(messages=messages)["messages"]] == ["user", "system", "assistant", "system"]
    assert chat(messages=messages)["messages"][1]["content"] == "mid-conversation rule"


def test_text_blocks_are_joined_and_empty_ones_never_sent():
    content = [{"type": "text", "text": "<system-reminder>x</system-reminder>"}, {"type": "text", "text": ""},
               {"type": "text", "text": "do it", "cache_control": {"type": "ephemeral"}}]
    messages = chat(messages=[{"role": "user", "content": content}, {"role": "assistant", "content": [
        {"type": "text", "text": ""}]}])["messages"]
    assert messages == [{"role": "user", "content": "<system-reminder>x</system-reminder>\n\ndo it"}]


def test_images_base64_and_url_become_image_url_parts():
    content = [{"type": "text", "text": "what is this?"},
               {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "QUJD"}},
               {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}]
    parts = chat(messages=[{"role": "user", "content": content}])["messages"][0]["content"]
    assert parts == [{"type": "text", "text": "what is this?"},
                     {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,QUJD"}},
                     {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]


def test_tool_use_and_several_tool_results_become_calls_and_tool_messages_in_order():
    assistant = {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "two calls", "signature": "sig"},
        {"type": "text", "text": "Running both."},
        {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}},
        {"type": "tool_use", "id": "toolu_2", "name": "Read", "input": {"path": "a"}}]}
    user = {"role": "user", "content": [
        {"type": "text", "text": "also this"},
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.txt", "cache_control": {"type": "ephemeral"}},
        {"type": "tool_result", "tool_use_id": "toolu_2", "content": [{"type": "text", "text": "line 1"}],
         "is_error": False}]}
    messages = chat(messages=[{"role": "user", "content": "go"}, assistant, user])["messages"]
    assert messages[1] == {"role": "assistant", "content": "Running both.", "reasoning_content": "two calls",
                           "tool_calls": [
                               {"id": "toolu_1", "type": "function",
                                "function": {"name": "Bash", "arguments": '{"command":"ls"}'}},
                               {"id": "toolu_2", "type": "function",
                                "function": {"name": "Read", "arguments": '{"path":"a"}'}}]}
    assert messages[2:] == [{"role": "tool", "tool_call_id": "toolu_1", "content": "a.txt"},
                            {"role": "tool", "tool_call_id": "toolu_2", "content": "line 1"},
                            {"role": "user", "content": "also this"}]


def test_an_assistant_turn_of_only_tool_calls_has_null_content():
    assistant = {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "Bash", "input": {}}]}
    message = chat(messages=[{"role": "user", "content": "go"}, assistant])["messages"][1]
    assert message["content"] is None and message["tool_calls"][0]["function"]["arguments"] == "{}"


def test_is_error_stays_visible_to_the_model():
    user = {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t1", "content": "command not found", "is_error": True}]}
    assert chat(messages=[user])["messages"] == [
        {"role": "tool", "tool_call_id": "t1", "content": "Error: command not found"}]


def test_images_in_a_tool_result_follow_the_tool_messages_in_a_user_message():
    user = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [
        {"type": "text", "text": "screenshot"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}]}]}
    messages = chat(messages=[user])["messages"]
    assert messages[0] == {"role": "tool", "tool_call_id": "t1", "content": "screenshot"}
    assert messages[1]["role"] == "user"
    assert messages[1]["content"][1] == {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}


@pytest.mark.parametrize("block", [
    {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}},
    {"type": "search_result", "source": "x", "title": "t", "content": []},
    {"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}},
])
def test_document_and_unknown_blocks_are_a_400_naming_the_block(block):
    with pytest.raises(InvalidRequest) as caught:
        chat(messages=[{"role": "user", "content": [{"type": "text", "text": "x"}, block]}])
    assert f"messages.0.content.1: content block type {block['type']!r}" in caught.value.message
    assert caught.value.status == 400


def test_server_tools_are_refused_and_custom_tools_translate():
    tools = [{"name": "Bash", "description": "run", "input_schema": {"type": "object", "additionalProperties": False},
              "cache_control": {"type": "ephemeral"}}]
    assert chat(tools=tools)["tools"] == [{"type": "function", "function": {
        "name": "Bash", "description": "run", "parameters": {"type": "object", "additionalProperties": False}}}]
    with pytest.raises(InvalidRequest, match="web_search_20250305"):
        chat(tools=[{"type": "web_search_20250305", "name": "web_search"}])
    with pytest.raises(InvalidRequest, match="tools must be a list"):
        chat(tools=5)


@pytest.mark.parametrize(("choice", "expected"), [
    ({"type": "auto"}, "auto"), ({"type": "any"}, "required"), ({"type": "none"}, "none"),
    ({"type": "tool", "name": "Bash"}, {"type": "function", "function": {"name": "Bash"}}),
])
def test_tool_choice(choice, expected):
    tools = [{"name": "Bash", "input_schema": {"type": "object"}}]
    assert chat(tools=tools, tool_choice=choice)["tool_choice"] == expected


def test_disable_parallel_tool_use_turns_parallel_tool_calls_off():
    tools = [{"name": "Bash", "input_schema": {"type": "object"}}]
    body = chat(tools=tools, tool_choice={"type": "auto", "disable_parallel_tool_use": True})
    assert body["parallel_tool_calls"] is False


def test_sampling_fields_stop_sequences_and_user():
    body = chat(temperature=0.2, top_p=0.9, top_k=40, stop_sequences=["END"], metadata={"user_id": '{"u": 1}'})
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["top_k"]) == (100, 0.2, 0.9, 40)
    assert body["stop"] == ["END"] and body["user"] == '{"u": 1}'


@pytest.mark.parametrize(("thinking", "output_config", "effort"), [
    ({"type": "enabled", "budget_tokens": 1024}, None, "low"),
    ({"type": "enabled", "budget_tokens": 8000}, None, "medium"),
    ({"type": "enabled", "budget_tokens": 31999}, None, "high"),
    ({"type": "adaptive"}, {"effort": "medium"}, "medium"),
    ({"type": "adaptive"}, {"effort": "max"}, "high"),
    ({"type": "adaptive"}, None, "high"),
    ({"type": "disabled"}, None, None),
])
def test_thinking_becomes_reasoning_effort(thinking, output_config, effort):
    fields = {"thinking": thinking, **({"output_config": output_config} if output_config else {})}
    assert chat(**fields).get("reasoning_effort") == effort


def test_streaming_asks_for_usage_and_unknown_fields_stay_behind():
    body = chat(stream=True, context_management={"edits": []}, service_tier="auto")
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert "context_management" not in body and "service_tier" not in body
    assert "stream_options" not in chat()


def test_redacted_thinking_is_dropped_for_chat_backends():
    assistant = {"role": "assistant", "content": [{"type": "redacted_thinking", "data": "opaque"},
                                                  {"type": "text", "text": "ok"}]}
    assert chat(messages=[{"role": "user", "content": "q"}, assistant])["messages"][1] == {
        "role": "assistant", "content": "ok"}
