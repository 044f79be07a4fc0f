"""Anthropic clients to an ``anthropic`` backend: the body and stream pass through untouched,
errors feed failover, and chains mix native and translated backends."""

from __future__ import annotations

import anthropic
import httpx
import orjson

from hookproxy.testing import Canned, chunk, content_stream
from hookproxy_anthropic.testing import error, stream, text_events, tool_events

KEY = "sk-proxy-anthropic"
UPSTREAM_KEY = "sk-upstream-secret-456"
USER = [{"role": "user", "content": "Hello there"}]


def raw_post(url, body, **headers):
    return httpx.post(url + "/v1/messages?beta=true", content=body,
                      headers={"x-api-key": KEY, "content-type": "application/json", **headers}, timeout=30)


def test_the_body_passes_through_with_only_the_model_rewritten(cli_proxy, claude_up):
    body = {"model": "claude:claude-fake", "max_tokens": 64, "future_field": {"kept": [1, 2]},
            "system": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
            "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
            "messages": [*USER, {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hm", "signature": "c2lnbmVk"},
                {"type": "text", "text": "Hi"}]},
                {"role": "user", "content": [{"type": "document", "source": {
                    "type": "text", "media_type": "text/plain", "data": "a document"}}]}]}
    answer = raw_post(cli_proxy, orjson.dumps(body), **{"anthropic-beta": "context-management-2025-06-27",
                                                         "anthropic-version": "2023-06-01"})
    assert answer.status_code == 200 and answer.json()["content"][0]["text"] == "echo: "
    request = claude_up.requests_to()[-1]
    assert request.json == {**body, "model": "claude-fake"}
    assert request.headers["anthropic-beta"] == "context-management-2025-06-27"
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert request.headers["x-api-key"] == UPSTREAM_KEY
    assert answer.headers["x-hookproxy-backend"] == "claude"


def test_a_native_stream_is_relayed_untouched(cli_proxy, claude_up):
    events = text_events(["Hel", "lo"], thinking=["thinking..."], signature="EqQBCkYIBxgCKkD")
    canned = stream(events)
    claude_up.queue(canned)
    body = {"model": "claude:claude-fake", "max_tokens": 64, "messages": USER, "stream": True}
    with httpx.stream("POST", cli_proxy + "/v1/messages", json=body, headers={"x-api-key": KEY}) as response:
        received = response.read()
    assert received == b"".join(canned.chunks or [])
    sdk = anthropic.Anthropic(base_url=cli_proxy, api_key=KEY, max_retries=0)
    claude_up.queue(stream(events))
    with sdk.messages.stream(model="claude:claude-fake", max_tokens=64, messages=USER) as messages:
        final = messages.get_final_message()
    assert final.content[0].signature == "EqQBCkYIBxgCKkD" and final.content[1].text == "Hello"


def test_unsigned_thinking_from_a_translated_turn_is_not_sent_to_anthropic(cli_proxy, claude_up):
    history = [*USER, {"role": "assistant", "content": [{"type": "thinking", "thinking": "from deepseek",
                                                         "signature": ""}, {"type": "text", "text": "Hi"}]},
               {"role": "user", "content": "more"}]
    sdk = anthropic.Anthropic(base_url=cli_proxy, api_key=KEY, max_retries=0)
    sdk.messages.create(model="claude:claude-fake", max_tokens=64, messages=history)
    assert claude_up.requests_to()[-1].json["messages"][1]["content"] == [{"type": "text", "text": "Hi"}]


def test_selector_parameters_beat_the_body_on_the_native_path(cli_proxy, claude_up):
    body = {"model": "claude:claude-fake?temperature=0.1&top_k=5", "max_tokens": 64, "messages": USER,
            "temperature": 0.9}
    assert raw_post(cli_proxy, orjson.dumps(body)).status_code == 200
    sent = claude_up.requests_to()[-1].json
    assert (sent["model"], sent["temperature"], sent["top_k"]) == ("claude-fake", 0.1, 5)


def test_native_errors_keep_their_shape_status_and_retry_after(cli_proxy, claude_up):
    sdk = anthropic.Anthropic(base_url=cli_proxy, api_key=KEY, max_retries=0)
    claude_up.queue(error(429, "rate_limit_error", "Number of requests exceeded", {"retry-after": "300"}))
    try:
        sdk.messages.create(model="claude:claude-fake", max_tokens=8, messages=USER)
    except anthropic.RateLimitError as limited:
        assert limited.response.headers["retry-after"] == "300"
        assert limited.body["error"] == {"type": "rate_limit_error", "message": "Number of requests exceeded"}
    else:
        raise AssertionError("no rate limit error")
    claude_up.queue(error(529, "overloaded_error", "Overloaded"))
    try:
        sdk.messages.create(model="claude:claude-fake", max_tokens=8, messages=USER)
    except anthropic.APIStatusError as overloaded:
        assert overloaded.status_code == 529 and overloaded.body["error"]["type"] == "overloaded_error"
    else:
        raise AssertionError("no overloaded error")


def test_failover_from_an_overloaded_anthropic_backend_to_a_chat_backend(cli_proxy, claude_up, fake_upstream):
    claude_up.queue(error(529, "overloaded_error", "Overloaded"))
    fake_upstream.queue(Canned(sse=content_stream(["from ", "chat"])))
    sdk = anthropic.Anthropic(base_url=cli_proxy, api_key=KEY, max_retries=0)
    with sdk.messages.stream(model="claude:claude-fake|up:gpt-fake", max_tokens=64, messages=USER) as messages:
        final = messages.get_final_message()
    assert final.content[0].text == "from chat"
    assert len(claude_up.requests_to()) == 1 and len(fake_upstream.requests_to()) == 1


def test_a_native_stream_that_fails_at_its_start_fails_over_by_anthropic_rules(cli_proxy, claude_up, fake_upstream):
    start, *_ = text_events(["x"])
    claude_up.queue(stream([start, {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}]))
    fake_upstream.queue(Canned(sse=content_stream(["rescued"])))
    sdk = anthropic.Anthropic(base_url=cli_proxy, api_key=KEY, max_retries=0)
    with sdk.messages.stream(model="claude:claude-fake|up:gpt-fake", max_tokens=64, messages=USER) as messages:
        assert messages.get_final_message().content[0].text == "rescued"


def test_failover_from_a_chat_backend_to_the_native_anthropic_backend(cli_proxy, claude_up, fake_upstream):
    fake_upstream.queue(Canned(status=500, json={"error": {"message": "broken"}}))
    sdk = anthropic.Anthropic(base_url=cli_proxy, api_key=KEY, max_retries=0)
    reply = sdk.messages.create(model="up:gpt-fake|claude:claude-fake", max_tokens=64,
                                messages=[{"role": "user", "content": [{"type": "text", "text": "hi",
                                                                        "cache_control": {"type": "ephemeral"}}]}])
    assert reply.content[0].text == "echo: hi"
    assert claude_up.requests_to()[-1].json["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}


def test_a_document_block_is_refused_when_a_chat_backend_may_answer(cli_proxy, claude_up):
    document = {"role": "user", "content": [{"type": "document", "source": {
        "type": "text", "media_type": "text/plain", "data": "x"}}]}
    sdk = anthropic.Anthropic(base_url=cli_proxy, api_key=KEY, max_retries=0)
    try:
        sdk.messages.create(model="claude:claude-fake|up:gpt-fake", max_tokens=8, messages=[document])
    except anthropic.BadRequestError as refused:
        assert "'document'" in refused.body["error"]["message"]
    else:
        raise AssertionError("a document went to a chain with a chat backend")
    assert claude_up.requests == []


def test_openai_chat_clients_reach_the_anthropic_backend(cli_proxy, claude_up):
    import openai

    chat = openai.OpenAI(base_url=cli_proxy + "/v1", api_key=KEY, max_retries=0)
    reply = chat.chat.completions.create(model="claude:claude-fake", messages=[
        {"role": "system", "content": "be kind"}, {"role": "user", "content": "hi"}], max_tokens=50)
    assert reply.choices[0].message.content == "echo: hi" and reply.choices[0].finish_reason == "stop"
    sent = claude_up.requests_to()[-1]
    assert sent.json == {"model": "claude-fake", "max_tokens": 50, "system": "be kind",
                         "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    assert sent.headers["anthropic-version"] == "2023-06-01" and sent.headers["x-api-key"] == UPSTREAM_KEY
    assert "authorization" not in sent.headers

    claude_up.queue(stream(tool_events([("toolu_1", "Bash", ['{"command"', ': "ls"}'])])))
    tools = [{"type": "function", "function": {"name": "Bash", "parameters": {"type": "object"}}}]
    pieces = list(chat.chat.completions.create(model="claude:claude-fake", messages=[{"role": "user", "content": "x"}],
                                               tools=tools, stream=True))
    arguments = "".join(c.choices[0].delta.tool_calls[0].function.arguments or "" for c in pieces
                        if c.choices and c.choices[0].delta.tool_calls)
    assert arguments == '{"command": "ls"}'
    assert pieces[-1].choices[0].finish_reason == "tool_calls"
    assert all(piece.choices for piece in pieces)  # no usage-only chunk: the client did not ask for one


def test_an_anthropic_error_event_reaches_an_openai_client_as_an_error(cli_proxy, claude_up):
    claude_up.queue(stream([*text_events(["a", "b"])[:4],
                            {"type": "error", "error": {"type": "api_error", "message": "lost it"}}]))
    with httpx.stream("POST", cli_proxy + "/v1/chat/completions", headers={"authorization": f"Bearer {KEY}"},
                      json={"model": "claude:claude-fake", "stream": True,
                            "messages": [{"role": "user", "content": "x"}]}) as response:
        text = response.read().decode()
    assert '"content":"a"' in text and "lost it" in text and text.rstrip().endswith("}")


def test_chat_chunks_keep_their_usage_for_clients_that_ask(cli_proxy, claude_up):
    import openai

    chat = openai.OpenAI(base_url=cli_proxy + "/v1", api_key=KEY, max_retries=0)
    claude_up.queue(stream(text_events(["x"], input_tokens=12)))
    pieces = list(chat.chat.completions.create(model="claude:claude-fake", messages=[{"role": "user", "content": "x"}],
                                               stream=True, stream_options={"include_usage": True}))
    assert pieces[-1].usage is not None and pieces[-1].usage.prompt_tokens == 12
    _ = chunk  # the OpenAI chunk helper is used by the other tests of this package
