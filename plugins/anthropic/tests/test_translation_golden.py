"""Golden equivalence: a corpus of varied Messages requests and chat answers, translated exactly
as recorded.

Each case is a request body (with request headers) or a chat-completions answer; the expected
result is the whole ``ClientRequest`` the front end builds (canonical body, headers, per-request
state) or the exact bytes it renders, or the error it raises (status, message, param). The
recordings in ``golden/messages.json`` were made from the translator before it was tuned for
speed, so any difference is a behaviour change: find out why before re-recording
(``python plugins/anthropic/tests/test_translation_golden.py`` rewrites the file).

The bodies mix what real clients send (Claude Code: system blocks with ``cache_control``, MCP
tools with names over 64 characters, long histories of tool calls and results, thinking) with
every malformed shape a translator checks.
"""

from __future__ import annotations

import copy
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from hookproxy import ClientRequest, HTTPRequest, ProxyError, Reply
from hookproxy.testing import GoldenFile
from hookproxy_anthropic.frontend import MessagesFrontend

GOLDEN = GoldenFile(Path(__file__).parent / "golden" / "messages.json")
LONG_TOOL = "mcp__a_very_long_server_name_for_testing__and_an_even_longer_tool_name_that_goes_on"
OTHER_LONG = "mcp__another_server_with_a_long_name__tool_" + "x" * 40


class _Settings:
    force_model = None


class _Proxy:
    """What ``MessagesFrontend.parse`` reads of the proxy: one backend, which does not speak
    Anthropic (so every request is translated)."""

    settings = _Settings()

    def candidates(self, selector: str) -> list[Any]:
        return [(object(), None)]


def _frontend() -> MessagesFrontend:
    return MessagesFrontend(_Proxy())  # type: ignore[arg-type]


def _user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def _assistant(content: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


def _body(**fields: Any) -> dict[str, Any]:
    return {"model": "claude-x", "max_tokens": 64, "messages": [_user("Say hello.")], **fields}


TOOLS = [
    {"name": "Bash", "description": "Run a command.", "input_schema": {
        "type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]},
     "cache_control": {"type": "ephemeral"}},
    {"name": "Read", "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}},
    {"name": LONG_TOOL, "description": "", "input_schema": {"type": "object"}},
    {"name": OTHER_LONG, "type": "custom"},
    {"name": "NoSchema", "description": "d", "input_schema": None},
]

HISTORY = [
    _user([{"type": "text", "text": "<system-reminder>ctx</system-reminder>"},
           {"type": "text", "text": "List the files.", "cache_control": {"type": "ephemeral"}}]),
    _assistant([{"type": "thinking", "thinking": "I should list.", "signature": "sig=="},
                {"type": "redacted_thinking", "data": "xyz"},
                {"type": "text", "text": "Listing."},
                {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}},
                {"type": "tool_use", "id": "toolu_2", "name": LONG_TOOL, "input": None},
                {"type": "tool_use", "id": "toolu_3", "name": "Read", "input": {"path": "ü/ä", "n": [1, 2.5]}}]),
    _user([{"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.txt\nb.txt",
            "cache_control": {"type": "ephemeral"}},
           {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": True, "content": "boom"},
           {"type": "tool_result", "tool_use_id": "toolu_3", "content": [
               {"type": "text", "text": "line 1"}, {"type": "text", "text": ""},
               {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "QUJD"}},
               {"type": "text", "text": "line 2"}]},
           {"type": "text", "text": "Now summarise."}]),
    _assistant("Two files."),
    _user([{"type": "tool_result", "tool_use_id": "toolu_4", "is_error": True, "content": ""},
           {"type": "tool_result", "tool_use_id": "toolu_5"},
           {"type": "tool_result", "tool_use_id": "toolu_6", "content": [], "is_error": "yes"}]),
    _assistant([{"type": "text", "text": ""}]),
    _assistant([{"type": "thinking", "thinking": ""}, {"type": "tool_use", "name": "Bash"}]),
    {"role": "system", "content": [{"type": "text", "text": "mid rule"}, {"type": "text", "text": "two"}]},
    {"role": "system", "content": ""},
    _user([{"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
           {"type": "image", "source": {"type": "base64", "data": "eA=="}},
           {"type": "text", "text": 42}]),
    _user([]),
    _user(""),
    _user("Thanks."),
]

#: (name, body, headers): requests that translate.
REQUESTS: list[tuple[str, dict[str, Any], dict[str, str]]] = [
    ("tiny", _body(), {}),
    ("tiny stream", _body(stream=True), {}),
    ("stream null", _body(stream=None), {}),
    ("stream false", _body(stream=False), {}),
    ("headers forwarded", _body(), {"anthropic-version": "2023-06-01", "anthropic-beta": "a,b",
                                    "x-api-key": "sk-secret", "authorization": "Bearer sk-secret"}),
    ("one header", _body(), {"anthropic-beta": "tools"}),
    ("system string", _body(system="Be brief."), {}),
    ("system empty string", _body(system=""), {}),
    ("system blocks", _body(system=[{"type": "text", "text": "billing"}, {"type": "text", "text": ""},
                                    {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]),
     {}),
    ("system null", _body(system=None), {}),
    ("sampling", _body(temperature=0.5, top_p=0.9, top_k=40, max_tokens=1000), {}),
    ("sampling nulls", _body(temperature=None, top_p=None, top_k=None), {}),
    ("stop sequences", _body(stop_sequences=["END", "\n\nHuman:"]), {}),
    ("stop sequences empty", _body(stop_sequences=[]), {}),
    ("stop sequences null", _body(stop_sequences=None), {}),
    ("metadata user", _body(metadata={"user_id": "user_abc"}), {}),
    ("metadata empty user", _body(metadata={"user_id": ""}), {}),
    ("metadata other", _body(metadata={"other": 1}), {}),
    ("metadata not dict", _body(metadata="x"), {}),
    ("thinking budget small", _body(thinking={"type": "enabled", "budget_tokens": 1024}), {}),
    ("thinking budget medium", _body(thinking={"type": "enabled", "budget_tokens": 8000}), {}),
    ("thinking budget large", _body(thinking={"type": "enabled", "budget_tokens": 32000}), {}),
    ("thinking no budget", _body(thinking={"type": "enabled"}), {}),
    ("thinking disabled", _body(thinking={"type": "disabled"}), {}),
    ("thinking adaptive", _body(thinking={"type": "adaptive"}), {}),
    ("thinking adaptive max", _body(thinking={"type": "adaptive"}, output_config={"effort": "max"}), {}),
    ("thinking adaptive low", _body(thinking={"type": "adaptive"}, output_config={"effort": "low"}), {}),
    ("thinking adaptive odd", _body(thinking={"type": "adaptive"}, output_config={"effort": "odd"}), {}),
    ("thinking adaptive bad", _body(thinking={"type": "adaptive"}, output_config={"effort": 3}), {}),
    ("thinking not dict", _body(thinking=True), {}),
    ("tools", _body(tools=TOOLS), {}),
    ("tools empty", _body(tools=[]), {}),
    ("tools null", _body(tools=None), {}),
    ("tool choice auto", _body(tools=TOOLS[:1], tool_choice={"type": "auto"}), {}),
    ("tool choice any parallel off", _body(tools=TOOLS[:1], tool_choice={"type": "any",
                                                                        "disable_parallel_tool_use": True}), {}),
    ("tool choice none", _body(tool_choice={"type": "none", "disable_parallel_tool_use": True}), {}),
    ("tool choice long name", _body(tools=TOOLS, tool_choice={"type": "tool", "name": LONG_TOOL}), {}),
    ("tool choice string ignored", _body(tool_choice="auto"), {}),
    ("history", _body(system="sys", tools=TOOLS, messages=HISTORY, stream=True,
                      stop_sequences=["X"], metadata={"user_id": "u"},
                      thinking={"type": "enabled", "budget_tokens": 5000}),
     {"anthropic-version": "2023-06-01"}),
    ("user only text blocks", _body(messages=[_user([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}])]),
     {}),
    ("texts around images", _body(messages=[_user([
        {"type": "text", "text": "one"}, {"type": "image", "source": {"type": "url", "url": "https://e.com/1.png"}},
        {"type": "text", "text": ""}, {"type": "text", "text": "two"},
        {"type": "tool_result", "tool_use_id": "t9", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/gif", "data": "R0lG"}}]},
        {"type": "text", "text": "three"}])]), {}),
    ("assistant prefill", _body(messages=[_user("hi"), _assistant("Sure,")]), {}),
    ("unicode", _body(messages=[_user("héllo \u2028 ☃ \U0001f600")], system="ß"), {}),
    ("extra fields ignored", _body(container="c", service_tier="auto", mcp_servers=[]), {}),
]

#: (name, body): requests that fail, and how.
BAD_REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("no model", {"max_tokens": 1, "messages": [_user("a")]}),
    ("model blank", _body(model="  ")),
    ("model number", _body(model=3)),
    ("no messages", {"model": "m", "max_tokens": 1}),
    ("messages empty", _body(messages=[])),
    ("messages dict", _body(messages={"role": "user"})),
    ("no max_tokens", {"model": "m", "messages": [_user("a")]}),
    ("max_tokens zero", _body(max_tokens=0)),
    ("max_tokens bool", _body(max_tokens=True)),
    ("max_tokens float", _body(max_tokens=1.5)),
    ("stream string", _body(stream="yes")),
    ("stop sequences string", _body(stop_sequences="END")),
    ("stop sequences numbers", _body(stop_sequences=["a", 1])),
    ("message not dict", _body(messages=[_user("a"), "hello"])),
    ("role bad", _body(messages=[{"role": "tool", "content": "x"}])),
    ("role missing", _body(messages=[{"content": "x"}])),
    ("content number", _body(messages=[_user(5)])),
    ("content null", _body(messages=[_assistant(None)])),
    ("block not dict", _body(messages=[_user(["text"])])),
    ("block no type", _body(messages=[_user([{"text": "a"}])])),
    ("block type number", _body(messages=[_user([{"type": 1}])])),
    ("document block", _body(messages=[_user("a"), _assistant("b"),
                                       _user([{"type": "text", "text": "x"},
                                              {"type": "document", "source": {}}])])),
    ("assistant image", _body(messages=[_assistant([{"type": "image", "source": {}}])])),
    ("user thinking", _body(messages=[_user([{"type": "thinking", "thinking": "t"}])])),
    ("image source file", _body(messages=[_user([{"type": "image", "source": {"type": "file", "file_id": "f"}}])])),
    ("image no source", _body(messages=[_user([{"type": "image"}])])),
    ("image url not string", _body(messages=[_user([{"type": "image", "source": {"type": "url", "url": 1}}])])),
    ("tool result number content", _body(messages=[_user([{"type": "tool_result", "tool_use_id": "t",
                                                            "content": 3}])])),
    ("tool result document", _body(messages=[_user([{"type": "tool_result", "tool_use_id": "t",
                                                     "content": [{"type": "document"}]}])])),
    ("tool result part not dict", _body(messages=[_user([{"type": "tool_result", "content": ["x"]}])])),
    ("tool result bad image", _body(messages=[_user([{"type": "tool_result", "content": [
        {"type": "image", "source": {"type": "file"}}]}])])),
    ("system number", _body(system=5)),
    ("system image block", _body(system=[{"type": "image"}])),
    ("system block not dict", _body(system=["a"])),
    ("system message bad", _body(messages=[{"role": "system", "content": [{"type": "image"}]}])),
    ("system message number", _body(messages=[{"role": "system", "content": 1}])),
    ("tools dict", _body(tools={"name": "a"})),
    ("tool no name", _body(tools=[{"input_schema": {}}])),
    ("tool not dict", _body(tools=["Bash"])),
    ("server tool", _body(tools=[{"type": "web_search_20250305", "name": "web_search"}])),
    ("tool choice bad", _body(tool_choice={"type": "everything"})),
    ("tool choice tool no name", _body(tool_choice={"type": "tool"})),
    ("error after earlier messages", _body(messages=[_user("a"), _assistant("b"), _user("c"),
                                                     _assistant([{"type": "server_tool_use"}])])),
]

#: (name, chat answer, stop sequences, shortened names) rendered as an Anthropic message.
ANSWERS: list[tuple[str, Any, list[str], dict[str, str]]] = [
    ("text", {"id": "chatcmpl-1", "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello.",
                                                                          "refusal": None},
                                                "logprobs": None, "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15}}, [], {}),
    ("reasoning and text", {"id": "c", "choices": [{"message": {"content": "Hi", "reasoning_content": "think"},
                                                    "finish_reason": "stop"}],
                            "usage": {"prompt_tokens": 10, "completion_tokens": 2,
                                      "prompt_tokens_details": {"cached_tokens": 4}}}, [], {}),
    ("reasoning field", {"id": "c", "choices": [{"message": {"content": "Hi", "reasoning": "r"},
                                                 "finish_reason": "length"}]}, [], {}),
    ("content parts", {"id": "c", "choices": [{"message": {"content": [{"type": "text", "text": "a"}, "x",
                                                                       {"text": "b"}]},
                                               "finish_reason": "stop"}]}, [], {}),
    ("tool calls", {"id": "c", "choices": [{"message": {"content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "Bash", "arguments": "{\"command\":\"ls\"}"}},
        {"id": "call_2", "type": "function", "function": {"name": "short_abc", "arguments": ""}},
        {"id": "call_3", "type": "function", "function": {"name": "Read", "arguments": "[1]"}},
        {"id": "call_4", "type": "function", "function": {"name": "Read", "arguments": "not json"}},
        {"id": "call_5", "type": "function", "function": {"name": "Read", "arguments": {"a": 1}}}]},
        "finish_reason": "stop"}], "usage": {"prompt_tokens": 5, "completion_tokens": 5,
                                              "prompt_cache_hit_tokens": 9}},
     [], {"short_abc": LONG_TOOL}),
    ("stop sequence matched vllm", {"id": "c", "choices": [{"message": {"content": "a"}, "finish_reason": "stop",
                                                            "stop_reason": "END"}]}, ["END"], {}),
    ("stop sequence matched sglang", {"id": "c", "choices": [{"message": {"content": "a"}, "finish_reason": "stop",
                                                              "matched_stop": "END"}]}, ["END"], {}),
    ("stop sequence not ours", {"id": "c", "choices": [{"message": {"content": "a"}, "finish_reason": "stop",
                                                        "stop_reason": "OTHER"}]}, ["END"], {}),
    ("finish reasons", {"id": "c", "choices": [{"message": {"content": "a"}, "finish_reason": "content_filter"}],
                        "usage": "bad"}, [], {}),
    ("finish unknown", {"id": "c", "choices": [{"message": {"content": "a"}, "finish_reason": "weird"}]}, [], {}),
    ("finish null", {"id": "c", "choices": [{"message": {"content": "a"}, "finish_reason": None}]}, [], {}),
    ("empty with length", {"id": "c", "choices": [{"message": {"content": ""}, "finish_reason": "length"}]}, [], {}),
    ("message not dict", {"id": "c", "choices": [{"message": "x", "finish_reason": "length"}]}, [], {}),
    ("usage odd", {"id": "c", "choices": [{"message": {"content": "a"}, "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": True, "completion_tokens": -3,
                             "prompt_tokens_details": {"cached_tokens": 50}}}, [], {}),
    ("usage cached over prompt", {"id": "c", "choices": [{"message": {"content": "a"}, "finish_reason": "stop"}],
                                  "usage": {"prompt_tokens": 3, "prompt_tokens_details": None,
                                            "prompt_cache_hit_tokens": 7}}, [], {}),
]

#: (name, raw answer bytes) that fail.
BAD_ANSWERS: list[tuple[str, bytes]] = [
    ("not json", b"<html>"),
    ("list", b"[1]"),
    ("no choices", b'{"id": "c"}'),
    ("empty choices", b'{"choices": []}'),
    ("choice not dict", b'{"choices": [1]}'),
    ("empty message", b'{"choices": [{"message": {"content": ""}, "finish_reason": "stop"}]}'),
    ("no message", b'{"choices": [{"finish_reason": "stop"}]}'),
]


def _request(body: dict[str, Any], headers: dict[str, str]) -> HTTPRequest:
    raw = [(name.encode(), value.encode()) for name, value in headers.items()]
    return HTTPRequest({"type": "http", "method": "POST", "path": "/v1/messages",
                        "headers": [(b"content-type", b"application/json"), *raw]}, body)


def _error(error: ProxyError) -> dict[str, Any]:
    return {"error": type(error).__name__, "status": error.status, "message": error.message,
            "param": error.param}


def _parsed(body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    given = copy.deepcopy(body)
    try:
        client = _frontend().parse(_request(given, headers))
    except ProxyError as error:
        return _error(error)
    assert isinstance(client, ClientRequest)
    assert given == body, "parse changed the client's body"
    assert client.native is given
    return {"model": client.model, "stream": client.stream, "usage_requested": client.usage_requested,
            "chat": client.body, "headers": dict(client.headers), "state": client.state}


def _rendered(answer: Any, stops: list[str], names: dict[str, str], parsed: bool = False) -> dict[str, Any]:
    """The answer rendered from its bytes, or (``parsed``) from the object the core parsed."""
    raw = answer if isinstance(answer, bytes) else orjson.dumps(answer)
    client = ClientRequest("anthropic", "anthropic-messages", "claude-x", False, {}, state={
        "stops": stops, "tool_names": names})
    try:
        if parsed:
            return {"bytes": _frontend().render_reply(Reply(body=raw, data=orjson.loads(raw)), client).decode()}
        return {"bytes": _frontend().render_body(raw, client).decode()}
    except ProxyError as error:
        return _error(error)


def _results() -> dict[str, Any]:
    return {
        "requests": {name: _parsed(body, headers) for name, body, headers in REQUESTS},
        "bad_requests": {name: _parsed(body, {}) for name, body in BAD_REQUESTS},
        "answers": {name: _rendered(answer, stops, names) for name, answer, stops, names in ANSWERS},
        "bad_answers": {name: _rendered(raw, [], {}) for name, raw in BAD_ANSWERS},
    }


@pytest.fixture(autouse=True)
def _fixed_uuid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID(int=7))


@pytest.mark.parametrize("group", ["requests", "bad_requests", "answers", "bad_answers"])
def test_every_case_translates_as_recorded(group: str) -> None:
    GOLDEN.assert_matches(group, _results()[group])


def test_the_corpus_covers_failures_and_successes() -> None:
    GOLDEN.assert_outcomes(succeeded=("requests", "answers"), failed=("bad_requests", "bad_answers"))


def test_an_answer_the_core_parsed_renders_as_its_bytes_do() -> None:
    """``render_reply`` translates ``Reply.data`` (the answer the core parsed once) exactly as
    ``render_body`` translates the bytes, for every answer the core would pass on parsed."""
    cases = [(name, answer, stops, names) for name, answer, stops, names in ANSWERS]
    cases += [(name, raw, [], {}) for name, raw in BAD_ANSWERS if _json_object(raw)]
    assert len(cases) > len(ANSWERS)
    for name, answer, stops, names in cases:
        assert _rendered(answer, stops, names, parsed=True) == _rendered(answer, stops, names), name


def _json_object(raw: Any) -> bool:
    try:
        return isinstance(orjson.loads(raw if isinstance(raw, bytes) else orjson.dumps(raw)), dict)
    except orjson.JSONDecodeError:
        return False


if __name__ == "__main__":
    uuid.uuid4 = lambda: uuid.UUID(int=7)  # type: ignore[assignment]
    GOLDEN.record(_results())
    sys.exit(0)
