"""Responses requests through the core's routing (a failover chain, the hybrid) and the response store."""

from __future__ import annotations

import openai
import pytest

from hookproxy.testing import Canned, chat_completion, chunk, content_stream


def sdk_for(url, kit):
    return openai.OpenAI(base_url=url + "/v1", api_key=kit.PROXY_KEY, max_retries=0)


def test_a_failover_chain_serves_responses_streamed_and_not(make_fake_upstream, cli_proxy, kit):
    broken, healthy = make_fake_upstream(), make_fake_upstream()
    config = {"backends": {"a": kit.backend(broken), "b": kit.backend(healthy)}}
    for _ in range(4):
        broken.queue(Canned(status=500, json={"error": {"message": "down", "type": "server_error"}}))
    healthy.queue(Canned(json=chat_completion("from b")), Canned(sse=content_stream(["streamed ", "from b"])))
    with cli_proxy(config) as (url, _process):
        client = sdk_for(url, kit)
        raw = client.responses.with_raw_response.create(model="a:m1|b:m2", input="hi")
        assert raw.parse().output_text == "from b" and raw.headers["x-hookproxy-backend"] == "b"
        events = list(client.responses.create(model="a:m1|b:m2", input="hi", stream=True))
    assert events[-1].type == "response.completed"
    assert events[-1].response.output[0].content[0].text == "streamed from b"
    assert [request.json["model"] for request in healthy.requests_to()] == ["m2", "m2"]
    assert broken.requests_to() and all(request.json["model"] == "m1" for request in broken.requests_to())


def test_the_hybrid_streams_its_reasoning_as_a_reasoning_item_then_the_answer(make_fake_upstream, cli_proxy, kit):
    thinker, doer = make_fake_upstream(), make_fake_upstream()
    thinking = [chunk({"role": "assistant", "content": None, "reasoning_content": ""})]
    thinking += [chunk({"reasoning_content": piece}) for piece in ["Plan: ", "add."]]
    thinking += [chunk({"content": piece}) for piece in ["ignored", " answer"]]
    thinker.queue(Canned(sse=thinking))
    doer.queue(Canned(sse=content_stream(["2 + 2 = ", "4"])))
    config = {"backends": {"thinker": kit.backend(thinker), "doer": kit.backend(doer)}}
    with cli_proxy(config) as (url, _process):
        events = list(sdk_for(url, kit).responses.create(
            model="hybrid:[thinker:r1,doer:coder]", input="What is 2 + 2?", stream=True))
    final = events[-1].response
    assert events[-1].type == "response.completed"
    assert [item.type for item in final.output] == ["reasoning", "message"]
    assert final.output[0].summary[0].text == "Plan: add."
    assert final.output[1].content[0].text == "2 + 2 = 4"
    summary_deltas = [event.delta for event in events if event.type == "response.reasoning_summary_text.delta"]
    assert "".join(summary_deltas) == "Plan: add."
    assert "Plan: add." in str(doer.requests_to()[0].json["messages"])


def test_previous_response_id_continues_a_stored_conversation(fake_upstream, cli_proxy, kit):
    config = {"default_backend": "up", "backends": {"up": kit.backend(fake_upstream)}}
    fake_upstream.queue(Canned(json=chat_completion("Nice to meet you, Ada.")),
                        Canned(sse=content_stream(["You are Ada."])))
    with cli_proxy(config, "--responses-store") as (url, _process):
        client = sdk_for(url, kit)
        first = client.responses.create(model="m1", input="My name is Ada.", instructions="Be kind.")
        events = list(client.responses.create(model="m1", input="Who am I?", previous_response_id=first.id,
                                              stream=True))
        assert events[-1].response.previous_response_id == first.id
        second = events[-1].response
        fake_upstream.queue(Canned(json=chat_completion("Still Ada.")))
        third = client.responses.create(model="m1", input="Again?", previous_response_id=second.id, store=False)
        assert third.output_text == "Still Ada."
        with pytest.raises(openai.BadRequestError, match="not found") as missing:
            client.responses.create(model="m1", input="x", previous_response_id=third.id)  # store=False: not kept
        assert missing.value.code == "previous_response_not_found"
    second_request, third_request = fake_upstream.requests_to()[1].json, fake_upstream.requests_to()[2].json
    assert second_request["messages"] == [  # the first response's instructions do not carry over
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Nice to meet you, Ada."},
        {"role": "user", "content": "Who am I?"}]
    assert third_request["messages"][-3:] == [
        {"role": "user", "content": "Who am I?"}, {"role": "assistant", "content": "You are Ada."},
        {"role": "user", "content": "Again?"}]


def test_a_stored_response_is_retrieved_as_received_and_deleted(fake_upstream, cli_proxy, kit):
    config = {"default_backend": "up", "backends": {"up": kit.backend(fake_upstream)}}
    fake_upstream.queue(Canned(json=chat_completion("Nice to meet you, Ada.")),
                        Canned(sse=content_stream(["You are ", "Ada."])))
    with cli_proxy(config, "--responses-store") as (url, _process):
        client = sdk_for(url, kit)
        first = client.responses.create(model="m1", input="My name is Ada.", metadata={"turn": "1"})
        events = list(client.responses.create(model="m1", input="Who am I?", previous_response_id=first.id,
                                              stream=True))
        streamed = events[-1].response
        for received in (first, streamed):
            assert client.responses.retrieve(received.id).model_dump() == received.model_dump()
        assert client.responses.retrieve(streamed.id).output_text == "You are Ada."

        client.responses.delete(first.id)
        with pytest.raises(openai.NotFoundError, match="not found") as gone:
            client.responses.retrieve(first.id)
        assert gone.value.code == "response_not_found"
        with pytest.raises(openai.NotFoundError):
            client.responses.delete(first.id)
        with pytest.raises(openai.BadRequestError, match="not found"):  # nor can it be continued
            client.responses.create(model="m1", input="x", previous_response_id=first.id)
        with pytest.raises(openai.NotFoundError, match="not served"):
            client.responses.input_items.list(streamed.id)


def test_without_the_store_a_response_cannot_be_retrieved(fake_upstream, cli_proxy, kit):
    config = {"default_backend": "up", "backends": {"up": kit.backend(fake_upstream)}}
    fake_upstream.queue(Canned(json=chat_completion("hello")))
    with cli_proxy(config) as (url, _process):
        client = sdk_for(url, kit)
        created = client.responses.create(model="m1", input="hi")
        with pytest.raises(openai.NotFoundError, match="--responses-store") as off:
            client.responses.retrieve(created.id)
        assert off.value.code == "response_store_disabled"
        unauthenticated = openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            unauthenticated.responses.retrieve(created.id)


def test_max_output_tokens_above_a_backends_cap_reaches_it_as_the_cap(fake_upstream, cli_proxy, kit):
    config = {"default_backend": "up", "backends": {"up": kit.backend(fake_upstream, max_output_tokens=8192)}}
    with cli_proxy(config) as (url, _process):
        client = sdk_for(url, kit)
        client.responses.create(model="m1", input="hi", max_output_tokens=128_000)
        client.responses.create(model="m1", input="hi", max_output_tokens=100)
    assert [request.json["max_tokens"] for request in fake_upstream.requests_to()] == [8192, 100]
