"""The two phases end to end, against fake upstreams on 127.0.0.1."""

from __future__ import annotations

import httpx
import pytest

from hookproxy.sse import MAX_EVENT_CHARS
from hookproxy.testing import Canned, chunk


def test_streaming_client_sees_reasoning_live_then_the_scrubbed_answer(start, fakes, kit):
    fakes.minimax.queue(kit.minimax_stream())
    fakes.qwen.queue(kit.answer_stream())
    result = kit.post_stream(start(), kit.SEED_SPEC)
    assert result.status == 200
    assert result.headers["x-hookproxy-hybrid"].startswith("reasoning=used; reason=initial_turns")
    assert result.reasoning == "Plan: use a loop."
    assert result.content == "Hello world"  # the execution model's own <think> split across chunks is gone
    kinds = ["reasoning" if e["choices"][0]["delta"].get("reasoning_content") else "other" for e in result.events]
    assert kinds[: kinds.index("other")] == ["reasoning"] * kinds.count("reasoning")  # reasoning first
    assert result.events[0]["model"] == "minimax:MiniMax-M2"
    assert result.done
    assert any("reasoning=used" in comment for comment in result.comments)


def test_the_reasoning_stream_is_closed_at_the_closing_tag(start, fakes, kit):
    fakes.minimax.queue(kit.minimax_stream())
    fakes.qwen.queue(kit.answer_stream())
    kit.post_stream(start(), kit.SEED_SPEC)
    record = kit.wait_closed(fakes.minimax)
    assert record.client_closed and not record.finished
    assert record.sent < record.planned


def test_the_execution_request_carries_the_reasoning_with_its_presets(start, fakes, kit):
    fakes.minimax.queue(kit.minimax_stream())
    fakes.qwen.queue(kit.answer_stream())
    kit.post_stream(start(), kit.SEED_SPEC, temperature=0.9)
    (reasoning_request,) = fakes.minimax.requests_to()
    assert reasoning_request.json["model"] == "MiniMax-M2"
    assert reasoning_request.json["stream"] is True
    assert reasoning_request.json["temperature"] == 0.9  # minimax has no reasoning preset
    (execution_request,) = fakes.qwen.requests_to()
    sent = execution_request.json
    assert sent["model"] == "qwen3-coder-plus"
    assert sent["thinking_budget"] == 0  # qwen-oauth execution preset
    assert sent["messages"][0] == {
        "role": "system",
        "content": "Consider this reasoning when formulating your response:\n\n"
                   "<thinking>Plan: use a loop.</thinking>",
    }
    assert sent["messages"][1:] == kit.USER


def test_a_reasoning_content_model_is_captured_and_closed_when_its_answer_starts(start, fakes, kit):
    fakes.deepseek.queue(kit.deepseek_stream())
    fakes.qwen.queue(kit.answer_stream())
    result = kit.post_stream(start(), kit.DEEPSEEK_SPEC)
    assert result.reasoning == "Think in steps."
    assert result.content == "Hello world"
    assert "answer_started" in result.comments[-1]
    assert kit.wait_closed(fakes.deepseek).sent < fakes.deepseek.stream_log[-1].planned
    assert fakes.deepseek.requests_to()[0].json["reasoning_effort"] == "high"  # deepseek preset
    assert "<thinking>Think in steps.</thinking>" in fakes.qwen.requests_to()[0].json["messages"][0]["content"]


def test_non_streaming_client_gets_reasoning_content_and_the_answer(start, fakes, kit):
    fakes.minimax.queue(kit.minimax_stream())
    fakes.qwen.queue(Canned(json={"id": "x", "object": "chat.completion", "model": "qwen3-coder-plus", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "<think>hidden</think>Hi!",
                                 "reasoning_content": "own"}, "finish_reason": "stop"}]}))
    response = kit.post(start(), kit.SEED_SPEC)
    assert response.status_code == 200
    assert response.headers["x-hookproxy-hybrid"] == "reasoning=used; reason=initial_turns; stop=closing_tag"
    message = response.json()["choices"][0]["message"]
    assert message["content"] == "Hi!"
    assert message["reasoning_content"] == "Plan: use a loop."
    assert message["reasoning"] == "<think>Plan: use a loop.</think>"  # the reasoning backend's tags
    assert fakes.minimax.requests_to()[0].json["stream"] is True  # always streamed
    assert fakes.qwen.requests_to()[0].json["stream"] is False
    kit.wait_closed(fakes.minimax)


def test_a_reasoning_timeout_answers_without_reasoning(start, fakes, kit):
    never_closes = ["<think>", *["slow "] * 20]
    fakes.minimax.queue(Canned(sse=kit.content_stream(never_closes), delay=0.2))
    fakes.qwen.queue(kit.answer_stream(["fine"]))
    result = kit.post_stream(start(hybrid_reasoning_model_timeout=1), kit.SEED_SPEC)
    assert result.reasoning.startswith("slow")  # it was live...
    assert result.content == "fine"
    assert "reason=timeout" in result.comments[-1]
    assert fakes.qwen.requests_to()[0].json["messages"] == kit.USER  # ...but not injected
    kit.wait_closed(fakes.minimax)


def test_a_reasoning_model_that_never_answers_times_out_before_any_byte(start, fakes, kit):
    fakes.minimax.queue(Canned(sse=kit.content_stream(["<think>late</think>"]), stall=3))
    fakes.qwen.queue(Canned(json=kit.chat_completion("fine")))
    response = kit.post(start(cli={"hybrid_reasoning_model_timeout": 1}), kit.SEED_SPEC)
    assert response.status_code == 200
    assert response.headers["x-hookproxy-hybrid"] == "reasoning=skipped; reason=timeout"
    assert "reasoning_content" not in response.json()["choices"][0]["message"]


def test_probability_zero_never_calls_the_reasoning_backend(start, fakes, kit):
    running = start(cli={"reasoning_injection_probability": 0})
    # A JSON answer for the non-streamed request: an SSE body there is a broken answer (a 502).
    fakes.qwen.queue(kit.answer_stream(["a"]), Canned(json=kit.chat_completion("b")))
    result = kit.post_stream(running, kit.SEED_SPEC)
    assert result.headers["x-hookproxy-hybrid"] == "reasoning=skipped; reason=probability"
    assert result.content == "a"
    assert kit.post(running, kit.SEED_SPEC).status_code == 200
    assert fakes.minimax.requests == []


def test_after_the_forced_turns_a_request_can_skip_reasoning(start, fakes, kit):
    history = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}] * 2
    messages = [*history, {"role": "user", "content": "c"}]
    running = start(hybrid_reasoning_force_initial_turns=2)
    response = kit.post(running, kit.SEED_SPEC, messages, extra_body={"_temp_hybrid_reasoning_probability": 0.0})
    assert response.headers["x-hookproxy-hybrid"] == "reasoning=skipped; reason=probability"
    assert fakes.minimax.requests == []
    sent = fakes.qwen.requests_to()[0].json
    assert "_temp_hybrid_reasoning_probability" not in sent and "extra_body" not in sent


def test_a_literal_extra_body_is_merged_into_each_phase_without_presets_inside(start, fakes, kit):
    fakes.minimax.queue(kit.minimax_stream())
    body = {"temperature": 0.9, "extra_body": {"top_k": 20, "enable_thinking": True, "model": "other"}}
    assert kit.post(start(), kit.SEED_SPEC, **body).status_code == 200
    for sent in (fakes.minimax.requests_to()[0].json, fakes.qwen.requests_to()[0].json):
        assert "extra_body" not in sent
        assert sent["top_k"] == 20 and sent["enable_thinking"] is True
    assert fakes.minimax.requests_to()[0].json["model"] == "MiniMax-M2"
    assert fakes.qwen.requests_to()[0].json["thinking_budget"] == 0  # the preset, at the top level only


@pytest.mark.parametrize(("model", "phrase"), [
    ("hybrid:[minimax:MiniMax-M2]", "Expected exactly 2 models separated by comma, got 1"),
    ("hybrid:[a:b,c:d,e:f]", "Expected exactly 2 models separated by comma, got 3"),
    ("hybrid:[minimax:,qwen-oauth:x]", "Incomplete reasoning model specification"),
    ("hybrid:[minimax:MiniMax-M2,qwen-oauth]", "Incomplete execution model specification"),
    ("hybrid:minimax", "Invalid hybrid model format"),
])
def test_a_malformed_spec_is_400_with_the_parser_message(start, fakes, kit, model, phrase):
    response = kit.post(start(), model)
    assert response.status_code == 400
    assert phrase in response.json()["error"]["message"]
    assert response.json()["error"]["code"] == "invalid_hybrid_model"
    assert fakes.minimax.requests == [] and fakes.qwen.requests == []


def test_an_unknown_backend_in_the_spec_is_400_before_any_call(start, fakes, kit):
    response = kit.post(start(), "hybrid:[nope:m,qwen-oauth:x]")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_backend"
    assert fakes.qwen.requests == []


def test_the_disabled_hybrid_is_400(start, kit):
    response = kit.post(start(disable_hybrid_backend=True), kit.SEED_SPEC)
    assert response.status_code == 400
    assert response.json()["error"] == {"message": "Hybrid backend is disabled", "type": "invalid_request_error",
                                        "param": None, "code": "hybrid_backend_disabled"}


@pytest.mark.parametrize("status", [401, 403, 429])
def test_client_error_statuses_of_the_reasoning_phase_are_kept(start, fakes, kit, status):
    fakes.minimax.queue(Canned(status=status, json={"error": {"message": "nope", "type": "x", "code": "y"}}))
    result = kit.post_stream(start(), kit.SEED_SPEC)
    assert result.status == status
    assert fakes.qwen.requests == []


@pytest.mark.parametrize("stream", [False, True])
def test_a_rate_limited_execution_phase_keeps_429(start, fakes, kit, stream):
    fakes.qwen.queue(Canned(status=429, json={"error": {"message": "slow down", "type": "rate_limit"}}))
    running = start(cli={"reasoning_injection_probability": 0})
    status = kit.post_stream(running, kit.SEED_SPEC).status if stream else kit.post(running, kit.SEED_SPEC).status_code
    assert status == 429


def test_a_failing_reasoning_backend_is_a_502_naming_the_phase(start, fakes, kit):
    fakes.minimax.queue(Canned(status=500, json={"error": {"message": "boom"}}))
    response = kit.post(start(), kit.SEED_SPEC)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "hybrid_reasoning_failed"
    assert "Hybrid backend error (reasoning phase)" in response.json()["error"]["message"]


def test_an_execution_failure_after_live_reasoning_is_one_error_event(start, fakes, kit):
    fakes.minimax.queue(kit.minimax_stream())
    fakes.qwen.queue(Canned(status=500, json={"error": {"message": "boom"}}))
    result = kit.post_stream(start(), kit.SEED_SPEC)
    assert result.status == 200 and result.reasoning == "Plan: use a loop."
    assert result.events[-1]["error"]["code"] == "hybrid_execution_failed"


def tool_call_stream() -> Canned:
    return Canned(sse=[
        chunk({"role": "assistant", "content": None, "tool_calls": [
            {"index": 0, "id": "call_1", "type": "function", "function": {"name": "ls", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"path":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"."}'}}]}),
        chunk({}, "tool_calls"),
    ])


@pytest.mark.parametrize("stream", [False, True])
def test_reasoning_tool_calls_without_text_short_circuit_the_execution(start, fakes, kit, stream):
    fakes.minimax.queue(tool_call_stream())
    running = start()
    if stream:
        result = kit.post_stream(running, kit.SEED_SPEC)
        (event,) = result.events
        choice = event["choices"][0]
        calls = choice["delta"]["tool_calls"]
        assert result.done and result.headers["x-hookproxy-hybrid"] == "reasoning=tool_calls"
    else:
        choice = kit.post(running, kit.SEED_SPEC).json()["choices"][0]
        calls = choice["message"]["tool_calls"]
    assert choice["finish_reason"] == "tool_calls"
    assert calls[0]["id"] == "call_1"
    assert calls[0]["function"] == {"name": "ls", "arguments": '{"path":"."}'}
    assert fakes.qwen.requests == []


def test_repeat_messages_and_list_content_and_an_existing_system_message(start, fakes, kit):
    fakes.minimax.queue(kit.minimax_stream())
    messages = [{"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
                {"role": "user", "content": [{"type": "text", "text": "Write a loop"}]}]
    kit.post(start(hybrid_backend_repeat_messages=True), kit.SEED_SPEC, messages)
    sent = fakes.qwen.requests_to()[0].json["messages"]
    assert sent[0]["content"][0] == {"type": "text", "text": "Be brief."}
    assert sent[0]["content"][1]["text"].endswith("<thinking>Plan: use a loop.</thinking>")
    assert sent[1] == messages[1]
    assert sent[2] == {"role": "assistant", "content": "", "reasoning": "<thinking>Plan: use a loop.</thinking>",
                       "reasoning_content": "Plan: use a loop."}


def test_uri_params_apply_to_their_own_phase_only(start, fakes, kit):
    fakes.minimax.queue(kit.minimax_stream())
    spec = "hybrid:[minimax:MiniMax-M2?temperature=0.2&reasoning_effort=low,qwen-oauth:qwen3-coder-plus?top_p=0.5]"
    kit.post(start(), spec, temperature=0.9)
    reasoning = fakes.minimax.requests_to()[0].json
    execution = fakes.qwen.requests_to()[0].json
    assert reasoning["temperature"] == 0.2 and "reasoning_effort" not in reasoning and "top_p" not in reasoning
    assert execution["top_p"] == 0.5 and execution["temperature"] == 0.9


def test_the_hybrid_lists_no_models(start, kit):
    with start().client() as client:
        ids = [model["id"] for model in client.get("/v1/models").json()["data"]]
    assert not any(model_id.startswith("hybrid") for model_id in ids)


def test_a_client_that_leaves_during_the_reasoning_closes_the_reasoning_stream(start, fakes, kit):
    fakes.minimax.queue(Canned(sse=kit.content_stream(["<think>", *["still thinking "] * 40]), delay=0.1))
    running = start()
    body = {"model": kit.SEED_SPEC, "messages": kit.USER, "stream": True}
    with running.client() as client, client.stream("POST", "/v1/chat/completions", json=body) as response:
        first = next(line for line in response.iter_lines() if line.startswith("data: "))
        assert "still thinking" in first
    record = kit.wait_closed(fakes.minimax)
    assert record.sent < record.planned
    assert fakes.qwen.requests == []


def test_an_execution_backend_that_ignores_stream_true_is_replayed_as_events(start, fakes, kit):
    fakes.qwen.queue(Canned(json=kit.chat_completion("<think>x</think>plain answer")))
    result = kit.post_stream(start(cli={"reasoning_injection_probability": 0}), kit.SEED_SPEC)
    assert result.content == "plain answer" and result.done


@pytest.mark.parametrize("stream", [False, True])
def test_a_reasoning_sse_line_over_the_limit_is_a_502_naming_the_backend(start, fakes, kit, stream):
    fakes.minimax.queue(Canned(chunks=[b'data: {"x": "' + b"a" * (MAX_EVENT_CHARS + 1024)]))
    running = start()
    response = httpx.post(running.url + "/v1/chat/completions", timeout=30,
                          json={"model": kit.SEED_SPEC, "messages": kit.USER, "stream": stream})
    assert response.status_code == 502, response.text[:300]
    message = response.json()["error"]["message"]
    assert "minimax" in message and "SSE line longer than" in message
