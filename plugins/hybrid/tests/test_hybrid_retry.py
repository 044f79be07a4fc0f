"""A retried hybrid call pays for its reasoning once: only the execution phase runs again.

The fakes record every request, so the number of calls each model received is the bill.
"""

from __future__ import annotations

import openai
import pytest

from hookproxy.testing import Canned

SLOW_DOWN = {"error": {"message": "slow down", "type": "rate_limit"}}


def rate_limited(seconds: str = "1") -> Canned:
    return Canned(status=429, json=SLOW_DOWN, headers={"retry-after": seconds})


def sdk(running):
    return openai.OpenAI(base_url=running.url + "/v1", api_key="unused", max_retries=0)


def test_a_rate_limited_execution_is_retried_without_reasoning_again(start, fakes, kit):
    fakes.minimax.queue(kit.minimax_stream(), kit.minimax_stream())
    fakes.qwen.queue(rate_limited(), Canned(json=kit.chat_completion("Hello")))
    raw = sdk(start()).chat.completions.with_raw_response.create(model=kit.SEED_SPEC, messages=kit.USER)
    reply = raw.parse()
    assert reply.choices[0].message.content == "Hello"
    assert reply.choices[0].message.reasoning_content == "Plan: use a loop."  # type: ignore[attr-defined]
    assert len(fakes.minimax.requests_to()) == 1  # the reasoning model was called (and billed) once
    executions = fakes.qwen.requests_to()
    assert len(executions) == 2
    assert executions[0].json["messages"] == executions[1].json["messages"]  # the same reasoning, reused
    assert "Plan: use a loop." in executions[1].json["messages"][0]["content"]


def test_an_execution_that_stays_rate_limited_is_a_429_after_one_retry(start, fakes, kit):
    fakes.minimax.queue(*[kit.minimax_stream() for _ in range(3)])
    fakes.qwen.queue(*[rate_limited() for _ in range(4)])
    with pytest.raises(openai.RateLimitError) as caught:
        sdk(start()).chat.completions.create(model=kit.SEED_SPEC, messages=kit.USER)
    assert caught.value.response.headers["retry-after"] == "1"
    assert len(fakes.minimax.requests_to()) == 1
    assert len(fakes.qwen.requests_to()) == 2  # one attempt and one retry, not a retry of each


def test_a_retry_keeps_the_decision_to_skip_reasoning(start, fakes, kit):
    fakes.qwen.queue(rate_limited(), Canned(json=kit.chat_completion("Hi")))
    running = start(cli={"reasoning_injection_probability": 0})
    response = kit.post(running, kit.SEED_SPEC)
    assert response.status_code == 200
    assert response.headers["x-hookproxy-hybrid"] == "reasoning=skipped; reason=probability"
    assert fakes.minimax.requests_to() == []
    assert len(fakes.qwen.requests_to()) == 2


def test_a_streaming_client_gets_the_retried_execution_stream(start, fakes, kit):
    fakes.minimax.queue(kit.minimax_stream(["<think></think>"]))  # no reasoning text: nothing streamed yet
    fakes.qwen.queue(rate_limited(), kit.answer_stream())
    stream = sdk(start()).chat.completions.create(model=kit.SEED_SPEC, messages=kit.USER, stream=True)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream) == "Hello world"
    assert len(fakes.minimax.requests_to()) == 1
    assert len(fakes.qwen.requests_to()) == 2
