"""Golden equivalence: a corpus of varied Responses requests and chat answers, translated exactly
as recorded.

Each case is a request body or a chat-completions answer; the expected result is what the front
end builds (canonical body, tool-name map, echoed fields, stored history) or the exact bytes it
renders, or the error it raises (status, message, param, code). The recordings in
``golden/responses.json`` were made from the translator before it was tuned for speed, so any
difference is a behaviour change: find out why before re-recording
(``python plugins/responses/tests/test_translation_golden.py`` rewrites the file).

The bodies mix what real clients send (Codex CLI: instructions, function, custom and namespace
tools, long histories with reasoning items, calls and their outputs) with every malformed shape
the translator checks.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from hookproxy import ClientRequest, HTTPRequest, ProxyError, Reply
from hookproxy.testing import GoldenFile
from hookproxy_responses import ResponsesFrontend, ResponsesSettings
from hookproxy_responses.response import STATE, ResponseState
from hookproxy_responses.store import MemoryStore
from hookproxy_responses.tools import ToolMap

GOLDEN = GoldenFile(Path(__file__).parent / "golden" / "responses.json")
LONG = "a_tool_name_that_is_much_longer_than_sixty_four_characters_allowed_by_chat"


def _body(**fields: Any) -> dict[str, Any]:
    return {"model": "gpt-x", "input": "Say hello.", **fields}


def _user(*texts: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text} for text in texts]}


def _call(call_id: str, name: str, arguments: Any = "{}", **extra: Any) -> dict[str, Any]:
    return {"type": "function_call", "id": "fc_" + call_id, "call_id": call_id, "name": name,
            "arguments": arguments, "status": "completed", **extra}


def _output(call_id: str, output: Any) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": call_id, "output": output}


TOOLS = [
    {"type": "function", "name": "shell", "description": "Run a command.", "strict": False,
     "parameters": {"type": "object", "properties": {"command": {"type": "array", "items": {"type": "string"}}}}},
    {"type": "function", "name": "plain"},
    {"type": "function", "name": LONG, "description": "", "parameters": None, "strict": "no"},
    {"type": "function", "name": "has.dots and spaces"},
    {"type": "custom", "name": "apply_patch", "description": "Patch files.",
     "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}},
    {"type": "custom", "name": "freeform"},
    {"type": "namespace", "name": "mcp", "tools": [
        {"type": "function", "name": "search", "parameters": {"type": "object"}},
        {"type": "custom", "name": "raw"},
        {"type": "web_search"}]},
    {"type": "web_search"},
    {"type": "file_search", "vector_store_ids": []},
]

HISTORY = [
    {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "dev rule"}]},
    {"role": "system", "content": "sys rule"},
    _user("<environment_context>cwd</environment_context>", "", "Fix the bug."),
    {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Look first."}],
     "encrypted_content": "gAAA"},
    _call("c1", "shell", "{\"command\":[\"ls\"]}"),
    _call("c2", "search", "", namespace="mcp"),
    _output("c1", "a.py"),
    _output("c2", [{"type": "input_text", "text": "found"}, {"type": "input_image", "image_url": "x"},
                   {"type": "output_text", "text": "more"}]),
    {"type": "reasoning", "id": "rs_2", "summary": [], "content": [{"type": "reasoning_text", "text": "Now patch."}]},
    {"type": "custom_tool_call", "call_id": "c3", "name": "apply_patch", "input": "*** Begin Patch"},
    {"type": "custom_tool_call_output", "call_id": "c3", "output": None},
    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Patched.",
                                                          "annotations": []}]},
    _call("c4", "plain"),
    _output("c_unknown", "orphan"),
    {"type": "message", "role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
    _user("And images?"),
    {"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": "look"},
        {"type": "input_image", "image_url": "data:image/png;base64,QUJD", "detail": "high"},
        {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "auto"}]},
    {"type": "web_search_call", "id": "ws_1", "status": "completed"},
    {"type": "reasoning", "summary": [{"type": "summary_text", "text": "dangling"}]},
    {"type": "message", "role": "assistant", "content": "plain string answer"},
    {"type": "message", "role": "user", "content": []},
]

#: (name, body, settings, with a store): requests that translate.
REQUESTS: list[tuple[str, dict[str, Any], dict[str, Any], bool]] = [
    ("tiny", _body(max_output_tokens=16), {}, False),
    ("tiny stream", _body(stream=True), {}, False),
    ("stream false", _body(stream=False, max_output_tokens=5), {}, False),
    ("stream null", _body(stream=None), {}, False),
    ("instructions", _body(instructions="Be brief."), {}, False),
    ("instructions empty", _body(instructions=""), {}, False),
    ("instructions only", {"model": "m", "instructions": "only"}, {}, False),
    ("sampling", _body(temperature=0.2, top_p=1, user="u1", max_output_tokens=100), {}, False),
    ("sampling nulls", _body(temperature=None, top_p=None, user=None, max_output_tokens=None), {}, False),
    ("text format text", _body(text={"format": {"type": "text"}, "verbosity": "low"}), {}, False),
    ("text format json object", _body(text={"format": {"type": "json_object"}}), {}, False),
    ("text format json schema", _body(text={"format": {"type": "json_schema", "name": "out", "strict": True,
                                                       "schema": {"type": "object"}, "extra": 1}}), {}, False),
    ("text format none", _body(text={"format": {}}), {}, False),
    ("text no format", _body(text={"verbosity": "high"}), {}, False),
    ("text not dict", _body(text="x"), {}, False),
    ("reasoning", _body(reasoning={"effort": "high", "summary": "auto"}), {}, False),
    ("reasoning no effort", _body(reasoning={"summary": "auto"}), {}, False),
    ("reasoning not dict", _body(reasoning="high"), {}, False),
    ("echo fields", _body(metadata={"k": "v"}, parallel_tool_calls=False, store=False, tool_choice="none",
                          truncation="auto", include=["reasoning.encrypted_content"], prompt_cache_key="p",
                          service_tier="auto"), {}, False),
    ("tools", _body(tools=TOOLS), {}, False),
    ("tools empty", _body(tools=[], tool_choice="required"), {}, False),
    ("tools null", _body(tools=None), {}, False),
    ("tool choice required", _body(tools=TOOLS[:1], tool_choice="required", parallel_tool_calls=True), {}, False),
    ("tool choice function", _body(tools=TOOLS, tool_choice={"type": "function", "name": LONG}), {}, False),
    ("tool choice custom", _body(tools=TOOLS, tool_choice={"type": "custom", "name": "apply_patch"}), {}, False),
    ("tool choice namespaced", _body(tools=TOOLS, tool_choice={"type": "function", "name": "search",
                                                               "namespace": "mcp"}), {}, False),
    ("tool choice allowed", _body(tools=TOOLS, tool_choice={"type": "allowed_tools", "mode": "required"}), {},
     False),
    ("tool choice allowed auto", _body(tools=TOOLS, tool_choice={"type": "allowed_tools", "mode": "auto"}), {},
     False),
    ("tool choice hosted", _body(tools=TOOLS, tool_choice={"type": "web_search"}), {}, False),
    ("only hosted tools", _body(tools=[{"type": "web_search"}], tool_choice="auto"), {}, False),
    ("history", _body(instructions="You are Codex.", tools=TOOLS, input=HISTORY, stream=True,
                      reasoning={"effort": "medium"}, parallel_tool_calls=False), {}, False),
    ("history no replay", _body(tools=TOOLS, input=HISTORY), {"responses_replay_reasoning": False}, False),
    ("history stored", _body(tools=TOOLS, input=HISTORY), {}, True),
    ("stored but store false", _body(store=False), {}, True),
    ("input empty list with instructions", _body(input=[], instructions="x"), {}, False),
    ("item without type", _body(input=[{"role": "user", "content": "hi"}]), {}, False),
    ("consecutive calls", _body(input=[_user("go"), _call("a", "f1"), _call("b", "f2", "{\"x\":1}"),
                                       _output("b", "B"), _output("a", "A"), _output("a", "again")]), {}, False),
    ("call without output", _body(input=[_user("go"), _call("a", "f1"), _user("next")]), {}, False),
    ("reasoning before call", _body(input=[_user("go"), {"type": "reasoning", "summary": [
        {"type": "summary_text", "text": "r1"}, {"type": "summary_text", "text": "r2"}]},
        _call("a", "f1"), _output("a", "ok")]), {}, False),
    ("custom call odd input", _body(input=[_user("go"), {"type": "custom_tool_call", "call_id": "z",
                                                         "name": "apply_patch", "input": 5},
                                           {"type": "custom_tool_call_output", "call_id": "z", "output": "done"}]),
     {}, False),
    ("call arguments not string", _body(input=[_user("go"), _call("a", "f1", {"x": 1}), _output("a", "ok")]),
     {}, False),
    ("texts around images", _body(input=[{"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": "one"}, {"type": "input_text", "text": ""},
        {"type": "output_text", "text": "two"},
        {"type": "input_image", "image_url": "https://example.com/1.png", "detail": "low"},
        {"type": "refusal", "refusal": "three"}, {"type": "input_image", "image_url": "https://example.com/2.png"},
        {"type": "summary_text", "text": "four"}, {"type": "text", "text": 5}]}]), {}, False),
    ("system message parts", _body(input=[{"type": "message", "role": "developer", "content": [
        {"type": "input_text", "text": "a"}, {"type": "input_text", "text": "b"}]}, _user("c")]), {}, False),
    ("unicode", _body(input="héllo \u2028 ☃ \U0001f600", instructions="ß"), {}, False),
    ("falsy refused fields", _body(background=False, conversation=None, prompt=""), {}, False),
]

#: (name, body, with a store): requests that fail, and how.
BAD_REQUESTS: list[tuple[str, dict[str, Any], bool]] = [
    ("no model", {"input": "a"}, False),
    ("model blank", _body(model=" "), False),
    ("model number", _body(model=1), False),
    ("stream string", _body(stream="true"), False),
    ("background", _body(background=True), False),
    ("conversation", _body(conversation="conv_1"), False),
    ("prompt", _body(prompt={"id": "p"}), False),
    ("previous without store", _body(previous_response_id="resp_1"), False),
    ("previous empty", _body(previous_response_id=""), True),
    ("previous number", _body(previous_response_id=3), False),
    ("input number", _body(input=5), False),
    ("input dict", _body(input={"role": "user"}), False),
    ("input item not object", _body(input=[_user("a"), "b"]), False),
    ("no input", {"model": "m"}, False),
    ("input empty", _body(input=[]), False),
    ("input only empty text", _body(input=[_user("")]), False),
    ("instructions number", _body(instructions=1), False),
    ("max tokens zero", _body(max_output_tokens=0), False),
    ("max tokens bool", _body(max_output_tokens=True), False),
    ("max tokens string", _body(max_output_tokens="5"), False),
    ("temperature string", _body(temperature="hot"), False),
    ("top_p bool", _body(top_p=True), False),
    ("text format bad", _body(text={"format": {"type": "yaml"}}), False),
    ("tools dict", _body(tools={"type": "function"}), False),
    ("tool no type", _body(tools=[{"name": "x"}]), False),
    ("tool not object", _body(tools=["x"]), False),
    ("tool no name", _body(tools=[{"type": "function"}]), False),
    ("custom tool empty name", _body(tools=[{"type": "custom", "name": ""}]), False),
    ("namespace no tools", _body(tools=[{"type": "namespace", "name": "n"}]), False),
    ("namespace no name", _body(tools=[{"type": "namespace", "tools": []}]), False),
    ("namespace member not object", _body(tools=[{"type": "namespace", "name": "n", "tools": [1]}]), False),
    ("namespace member no name", _body(tools=[{"type": "namespace", "name": "n", "tools": [{"type": "function"}]}]),
     False),
    ("tool choice number", _body(tools=TOOLS[:1], tool_choice=3), False),
    ("role bad", _body(input=[{"type": "message", "role": "tool", "content": "x"}]), False),
    ("content number", _body(input=[{"type": "message", "role": "user", "content": 3}]), False),
    ("content part bad", _body(input=[{"type": "message", "role": "user", "content": [{"type": "input_file"}]}]),
     False),
    ("content part not object", _body(input=[{"type": "message", "role": "user", "content": ["x"]}]), False),
    ("assistant image", _body(input=[{"type": "message", "role": "assistant", "content": [
        {"type": "input_image", "image_url": "u"}]}]), False),
    ("image no url", _body(input=[{"type": "message", "role": "user", "content": [
        {"type": "input_image", "file_id": "f"}]}]), False),
    ("call no call id", _body(input=[_user("a"), {"type": "function_call", "name": "f"}]), False),
    ("call no name", _body(input=[_user("a"), {"type": "function_call", "call_id": "c"}]), False),
    ("output no call id", _body(input=[_user("a"), {"type": "function_call_output", "output": "x"}]), False),
    ("output number", _body(input=[_user("a"), _call("c", "f"), _output("c", 5)]), False),
    ("item reference", _body(input=[_user("a"), {"type": "item_reference", "id": "msg_1"}]), False),
    ("error deep in history", _body(input=[*HISTORY, {"type": "message", "role": "user", "content": [
        {"type": "input_audio"}]}]), False),
]

#: (name, chat answer): rendered as a Responses response object.
ANSWERS: list[tuple[str, Any]] = [
    ("text", {"id": "chatcmpl-1", "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello.",
                                                                          "refusal": None},
                                                "logprobs": None, "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15}}),
    ("reasoning content", {"choices": [{"message": {"content": "Hi", "reasoning_content": "think"},
                                        "finish_reason": "stop"}],
                           "usage": {"prompt_tokens": 10, "completion_tokens": 4,
                                     "prompt_tokens_details": {"cached_tokens": 3},
                                     "completion_tokens_details": {"reasoning_tokens": 2}}}),
    ("reasoning field", {"choices": [{"message": {"content": "Hi", "reasoning": "r", "reasoning_content": None},
                                      "finish_reason": "length"}], "usage": {"prompt_cache_hit_tokens": 4}}),
    ("refusal", {"choices": [{"message": {"content": None, "refusal": "I can't."}, "finish_reason": "stop"}]}),
    ("refusal with content", {"choices": [{"message": {"content": "x", "refusal": "no"}, "finish_reason": "stop"}]}),
    ("tool calls", {"choices": [{"message": {"content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "shell", "arguments": "{\"command\":[\"ls\"]}"}},
        {"id": "call_2", "type": "function", "function": {"name": "apply_patch",
                                                          "arguments": "{\"input\":\"*** Begin\"}"}},
        {"id": "call_3", "type": "function", "function": {"name": "mcp__search", "arguments": None}},
        {"id": "call_4", "type": "function", "function": {"name": "apply_patch", "arguments": "raw text"}},
        {"id": "call_5", "type": "function", "function": {"name": "apply_patch", "arguments": "{\"p\":\"v\"}"}},
        {"id": "call_6", "type": "function", "function": {"arguments": "{}"}},
        "not a call",
        {"id": "call_7", "function": "x"}]}, "finish_reason": "tool_calls"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 0}}),
    ("content filter", {"choices": [{"message": {"content": "a"}, "finish_reason": "content_filter"}],
                        "usage": "bad"}),
    ("finish unknown", {"choices": [{"message": {"content": "a"}, "finish_reason": "weird"}]}),
    ("message not dict", {"choices": [{"message": "x", "finish_reason": None}]}),
    ("empty content", {"choices": [{"message": {"content": ""}, "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": True, "completion_tokens": 2.5}}),
]

BAD_ANSWERS: list[tuple[str, bytes]] = [
    ("not json", b"<html>"),
    ("list", b"[1]"),
    ("no choices", b'{"id": "c"}'),
    ("choices dict", b'{"choices": {}}'),
    ("empty choices", b'{"choices": []}'),
    ("choice not dict", b'{"choices": [1]}'),
]


def _frontend(settings: dict[str, Any], stored: bool) -> ResponsesFrontend:
    store = MemoryStore(10, 60.0) if stored else None
    return ResponsesFrontend(ResponsesSettings(**settings), store)


def _request(body: dict[str, Any]) -> HTTPRequest:
    return HTTPRequest({"type": "http", "method": "POST", "path": "/v1/responses",
                        "headers": [(b"content-type", b"application/json")]}, body)


def _error(error: ProxyError) -> dict[str, Any]:
    return {"error": type(error).__name__, "status": error.status, "message": error.message,
            "param": error.param, "code": error.code}


def _names(names: ToolMap) -> dict[str, Any]:
    return {canonical: [tool.name, tool.namespace, tool.custom] for canonical, tool in names._by_canonical.items()}


def _parsed(body: dict[str, Any], settings: dict[str, Any], stored: bool) -> dict[str, Any]:
    given = copy.deepcopy(body)
    try:
        client = _frontend(settings, stored).parse(_request(given))
    except ProxyError as error:
        return _error(error)
    assert isinstance(client, ClientRequest)
    assert given == body, "parse changed the client's body"
    assert client.native is given
    state = client.state[STATE]
    return {"model": client.model, "stream": client.stream, "usage_requested": client.usage_requested,
            "headers": dict(client.headers), "chat": client.body, "state_keys": list(client.state),
            "state": {"model": state.model, "names": _names(state.names), "echo": state.echo,
                      "history": state.history}}


def _render_names() -> ToolMap:
    names = ToolMap()
    names.canonical("shell")
    names.canonical("apply_patch", custom=True)
    names.canonical("search", "mcp")
    return names


def _rendered(answer: Any, parsed: bool = False) -> dict[str, Any]:
    """The answer rendered from its bytes, or (``parsed``) from the object the core parsed."""
    raw = answer if isinstance(answer, bytes) else orjson.dumps(answer)
    state = ResponseState("gpt-x", _render_names(), {"instructions": None, "store": False})
    state.id = "resp_00112233445566778899aabb"
    state.created_at = 1700000000
    client = ClientRequest("responses", "openai-responses", "gpt-x", False, {}, state={STATE: state})
    try:
        if parsed:
            reply = Reply(body=raw, data=orjson.loads(raw))
            return {"bytes": _frontend({}, False).render_reply(reply, client).decode()}
        return {"bytes": _frontend({}, False).render_body(raw, client).decode()}
    except ProxyError as error:
        return _error(error)


def _results() -> dict[str, Any]:
    return {
        "requests": {name: _parsed(body, settings, stored) for name, body, settings, stored in REQUESTS},
        "bad_requests": {name: _parsed(body, {}, stored) for name, body, stored in BAD_REQUESTS},
        "answers": {name: _rendered(answer) for name, answer in ANSWERS},
        "bad_answers": {name: _rendered(raw) for name, raw in BAD_ANSWERS},
    }


@pytest.mark.parametrize("group", ["requests", "bad_requests", "answers", "bad_answers"])
def test_every_case_translates_as_recorded(group: str) -> None:
    GOLDEN.assert_matches(group, _results()[group])


def test_the_corpus_covers_failures_and_successes() -> None:
    GOLDEN.assert_outcomes(succeeded=("requests", "answers"), failed=("bad_requests", "bad_answers"))


def test_an_answer_the_core_parsed_renders_as_its_bytes_do() -> None:
    """``render_reply`` translates ``Reply.data`` (the answer the core parsed once) exactly as
    ``render_body`` translates the bytes, for every answer the core would pass on parsed."""
    cases = [answer for _name, answer in ANSWERS] + [raw for _name, raw in BAD_ANSWERS if _json_object(raw)]
    assert len(cases) > len(ANSWERS)
    for answer in cases:
        assert _rendered(answer, parsed=True) == _rendered(answer), answer


def _json_object(raw: Any) -> bool:
    try:
        return isinstance(orjson.loads(raw if isinstance(raw, bytes) else orjson.dumps(raw)), dict)
    except orjson.JSONDecodeError:
        return False


if __name__ == "__main__":
    GOLDEN.record(_results())
    sys.exit(0)
