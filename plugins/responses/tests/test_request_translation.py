"""Each request translation rule: a Responses body in, the canonical chat body the backend gets out."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from hookproxy import ClientRequest, HTTPRequest, InvalidRequest
from hookproxy_responses import ResponsesFrontend, ResponsesSettings

SCOPE = {"type": "http", "method": "POST", "path": "/v1/responses", "headers": []}


def parse(body: dict[str, Any], **settings: Any) -> ClientRequest:
    client = ResponsesFrontend(ResponsesSettings(**settings)).parse(HTTPRequest(SCOPE, {"model": "m", **body}))
    assert isinstance(client, ClientRequest)
    return client


def chat(body: dict[str, Any], **settings: Any) -> dict[str, Any]:
    return parse(body, **settings).body


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def call(call_id: str, name: str, arguments: str = "{}", **extra: Any) -> dict[str, Any]:
    return {"type": "function_call", "id": "fc_" + call_id, "call_id": call_id, "name": name,
            "arguments": arguments, "status": "completed", **extra}


def output(call_id: str, text: Any) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": call_id, "output": text}


def test_a_string_input_is_one_user_message_and_instructions_a_system_message():
    body = chat({"input": "Hi", "instructions": "Be brief."})
    assert body == {"model": "m", "messages": [{"role": "system", "content": "Be brief."},
                                               {"role": "user", "content": "Hi"}]}


def test_developer_and_system_messages_become_system_messages_in_place():
    body = chat({"input": [
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Rule one."},
                                                              {"type": "input_text", "text": "Rule two."}]},
        user("Hello"),
        {"role": "system", "content": "Later note."},
    ]})
    assert body["messages"] == [{"role": "system", "content": "Rule one.\nRule two."},
                                {"role": "user", "content": "Hello"},
                                {"role": "system", "content": "Later note."}]


def test_images_become_image_url_parts_and_assistant_text_is_kept():
    body = chat({"input": [
        {"role": "user", "content": [
            {"type": "input_text", "text": "What is this?"},
            {"type": "input_image", "image_url": "data:image/png;base64,AAA", "detail": "low"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "A cat."}]},
    ]})
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA",
                                                                         "detail": "low"}}]},
        {"role": "assistant", "content": "A cat."}]


def test_consecutive_calls_are_one_assistant_message_followed_by_each_output_as_a_string():
    said = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "On it."}]}
    body = chat({"input": [user("Two things"), said,
                           call("call_a", "read", '{"path": "a"}'), call("call_b", "read", '{"path": "b"}'),
                           output("call_a", "A"), output("call_b", [{"type": "input_text", "text": "B1"},
                                                                    {"type": "input_text", "text": "B2"}])]})
    assert body["messages"][1:] == [
        {"role": "assistant", "content": "On it.", "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "read", "arguments": '{"path": "a"}'}},
            {"id": "call_b", "type": "function", "function": {"name": "read", "arguments": '{"path": "b"}'}}]},
        {"role": "tool", "tool_call_id": "call_a", "content": "A"},
        {"role": "tool", "tool_call_id": "call_b", "content": "B1\nB2"}]


def test_tool_messages_follow_their_calls_even_when_the_client_interleaves_or_loses_them(caplog):
    caplog.set_level(logging.INFO, "hookproxy.responses")
    body = chat({"input": [user("go"), call("call_a", "run"), user("meanwhile"), output("call_a", "done"),
                           call("call_b", "run"), output("call_zombie", "?")]})
    assert [(m["role"], m.get("tool_call_id")) for m in body["messages"]] == [
        ("user", None), ("assistant", None), ("tool", "call_a"), ("user", None), ("assistant", None),
        ("tool", "call_b")]
    assert body["messages"][-1]["content"] == "aborted"  # a call whose output never came
    assert "call_zombie" in caplog.text


def test_custom_tools_are_one_string_functions_and_their_calls_come_back_as_such():
    grammar = "start: begin_patch hunk+ end_patch"
    client = parse({"input": [
        user("patch it"),
        {"type": "custom_tool_call", "call_id": "call_p", "name": "apply_patch", "input": "*** Begin Patch\n"},
        {"type": "custom_tool_call_output", "call_id": "call_p", "output": "Done!"},
    ], "tools": [{"type": "custom", "name": "apply_patch", "description": "Edit files.",
                  "format": {"type": "grammar", "syntax": "lark", "definition": grammar}}]})
    tool = client.body["tools"][0]["function"]
    assert tool["name"] == "apply_patch" and tool["description"] == "Edit files."
    assert tool["parameters"]["required"] == ["input"] and tool["parameters"]["properties"]["input"]["type"] == "string"
    assert grammar in tool["parameters"]["properties"]["input"]["description"]
    calls = client.body["messages"][1]["tool_calls"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"input": "*** Begin Patch\n"}
    assert client.body["messages"][2] == {"role": "tool", "tool_call_id": "call_p", "content": "Done!"}


def test_namespace_tools_are_flattened_and_long_or_odd_names_shortened():
    client = parse({"input": [user("x"), call("call_n", "spawn", namespace="agents"), output("call_n", "ok")],
                    "tools": [{"type": "namespace", "name": "agents", "description": "Sub-agents.",
                               "tools": [{"type": "function", "name": "spawn", "parameters": None}]},
                              {"type": "function", "name": "x" * 70, "parameters": {"type": "object"}},
                              {"type": "function", "name": "mcp.server/tool", "parameters": {"type": "object"}}]})
    names = [tool["function"]["name"] for tool in client.body["tools"]]
    assert names[0] == "agents__spawn"
    assert client.body["tools"][0]["function"]["parameters"] == {"type": "object", "properties": {}}
    assert len(names[1]) == 64 and names[1].startswith("xxxx")
    assert all(character.isalnum() or character in "_-" for character in names[2])
    assert client.body["messages"][1]["tool_calls"][0]["function"]["name"] == "agents__spawn"


def test_hosted_tools_are_dropped_with_a_log_line_not_a_failure(caplog):
    caplog.set_level(logging.INFO, "hookproxy.responses")
    body = chat({"input": "hi", "tools": [{"type": "web_search", "external_web_access": True},
                                          {"type": "function", "name": "f", "parameters": {"type": "object"}}],
                 "tool_choice": "auto", "parallel_tool_calls": True})
    assert [tool["function"]["name"] for tool in body["tools"]] == ["f"]
    assert body["tool_choice"] == "auto" and body["parallel_tool_calls"] is True
    assert "'web_search'" in caplog.text
    only_hosted = chat({"input": "hi", "tools": [{"type": "web_search"}], "tool_choice": "auto",
                        "parallel_tool_calls": True})
    assert "tools" not in only_hosted and "tool_choice" not in only_hosted and "parallel_tool_calls" not in only_hosted


@pytest.mark.parametrize(("choice", "expected"), [
    ("required", "required"),
    ({"type": "function", "name": "f"}, {"type": "function", "function": {"name": "f"}}),
    ({"type": "allowed_tools", "mode": "required", "tools": []}, "required"),
    ({"type": "web_search_preview"}, "auto"),
])
def test_tool_choice(choice, expected):
    body = chat({"input": "hi", "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
                 "tool_choice": choice})
    assert body["tool_choice"] == expected


def test_sampling_format_and_effort_are_translated_and_client_only_fields_are_not_forwarded():
    body = chat({"input": "hi", "max_output_tokens": 50, "temperature": 0.2, "top_p": 0.9,
                 "text": {"format": {"type": "json_schema", "name": "answer", "schema": {"type": "object"},
                                     "strict": True}, "verbosity": "low"},
                 "reasoning": {"effort": "high", "summary": "auto"}, "store": False,
                 "include": ["reasoning.encrypted_content"], "prompt_cache_key": "k", "metadata": {"a": "b"},
                 "client_metadata": {"x": "y"}, "safety_identifier": "s", "service_tier": "auto"})
    assert body == {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50,
                    "temperature": 0.2, "top_p": 0.9,
                    "response_format": {"type": "json_schema", "json_schema": {
                        "name": "answer", "schema": {"type": "object"}, "strict": True}},
                    "reasoning_effort": "high"}
    assert chat({"input": "hi", "text": {"format": {"type": "json_object"}}})["response_format"] == {
        "type": "json_object"}


def test_a_streaming_request_wants_the_usage_chunk():
    client = parse({"input": "hi", "stream": True})
    assert client.stream and client.body["stream"] is True and client.usage_requested


def test_reasoning_summaries_go_back_as_reasoning_content_and_encrypted_content_never_does():
    items = [user("q"),
             {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Think first."}],
              "encrypted_content": "gAAAA-opaque-blob"},
             call("call_r", "run"), output("call_r", "ok"),
             {"type": "reasoning", "id": "rs_2", "summary": [], "encrypted_content": "gAAAA-other-blob"},
             {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Done."}]}]
    body = chat({"input": items})
    assert body["messages"][1] == {"role": "assistant", "content": None, "reasoning_content": "Think first.",
                                   "tool_calls": [{"id": "call_r", "type": "function",
                                                   "function": {"name": "run", "arguments": "{}"}}]}
    assert body["messages"][3] == {"role": "assistant", "content": "Done."}
    assert "gAAAA" not in json.dumps(body)
    without = chat({"input": items}, responses_replay_reasoning=False)
    assert "reasoning_content" not in json.dumps(without)


@pytest.mark.parametrize(("body", "param", "text"), [
    ({"model": ""}, "model", "'model' is required"),
    ({"input": 3}, "input", "'input' must be a string or an array"),
    ({"input": []}, "input", "at least one message"),
    ({"input": "x", "stream": "yes"}, "stream", "'stream' must be a boolean"),
    ({"input": [{"type": "message", "role": "robot", "content": "x"}]}, "input.0.role", "must be one of"),
    ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "input.0.call_id", "call_id"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input.0", "item references"),
    ({"input": "x", "max_output_tokens": 0}, "max_output_tokens", "positive integer"),
    ({"input": "x", "background": True}, "background", "not supported"),
    ({"input": "x", "tools": [{"type": "function"}]}, "tools.0.name", "non-empty string"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}, "input.0.content.0",
     "'input_file' is not supported"),
])
def test_bad_input_is_a_400_naming_the_field(body, param, text):
    with pytest.raises(InvalidRequest, match=text) as raised:
        parse(body)
    assert raised.value.status == 400 and raised.value.param == param


def test_previous_response_id_without_the_store_names_the_setting():
    with pytest.raises(InvalidRequest, match="--responses-store") as raised:
        parse({"input": "x", "previous_response_id": "resp_1"})
    assert raised.value.param == "previous_response_id" and "HOOKPROXY_RESPONSES_STORE" in raised.value.message
