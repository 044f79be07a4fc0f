"""With ``state: redis://...`` the response store is shared: a conversation started through one
proxy continues through another (each test starts its own redis-server on a loopback port)."""

from __future__ import annotations

import openai
import pytest

from hookproxy.testing import Canned, chat_completion


def test_previous_response_id_continues_on_another_host(fake_upstream, redis_server, kit, tmp_path):
    config = {"default_backend": "up", "backends": {"up": kit.backend(fake_upstream)}}
    fake_upstream.queue(Canned(json=chat_completion("Nice to meet you, Ada.")), Canned(json=chat_completion("Ada.")))
    flags = ("--responses-store", "--state", redis_server.url)
    with kit.start_cli_proxy(tmp_path / "one", config, *flags) as (one, _), \
            kit.start_cli_proxy(tmp_path / "two", config, *flags) as (two, _):
        first = openai.OpenAI(base_url=one + "/v1", api_key=kit.PROXY_KEY, max_retries=0).responses.create(
            model="m1", input="My name is Ada.")
        on_two = openai.OpenAI(base_url=two + "/v1", api_key=kit.PROXY_KEY, max_retries=0)
        second = on_two.responses.create(model="m1", input="Who am I?", previous_response_id=first.id)
        assert on_two.responses.retrieve(first.id).model_dump() == first.model_dump()  # kept where both see it
        on_two.responses.delete(first.id)
        with pytest.raises(openai.NotFoundError):
            openai.OpenAI(base_url=one + "/v1", api_key=kit.PROXY_KEY, max_retries=0).responses.retrieve(first.id)
    assert second.output_text == "Ada."
    assert fake_upstream.requests_to()[1].json["messages"] == [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Nice to meet you, Ada."},
        {"role": "user", "content": "Who am I?"}]
