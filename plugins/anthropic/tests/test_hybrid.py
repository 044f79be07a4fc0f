"""A hybrid selector through ``/v1/messages``: the chat backend reasons, the Anthropic backend
answers (translated, since the hybrid calls it through the core), and the Anthropic client sees
one thinking block, then the answer."""

from __future__ import annotations

import anthropic
import orjson

from hookproxy.testing import Canned, chunk

KEY = "sk-proxy-anthropic"
SPEC = "hybrid:[up:gpt-fake,claude:claude-fake]"


def reasoning_stream() -> Canned:
    events = [chunk({"role": "assistant", "content": None, "reasoning_content": ""})]
    events += [chunk({"reasoning_content": piece}) for piece in ["Plan: ", "say hi."]]
    events += [chunk({"content": piece}) for piece in ["never ", "read"]]
    return Canned(sse=events)


def test_hybrid_thinks_on_one_backend_and_answers_on_the_anthropic_one(cli_proxy, fake_upstream, claude_up):
    fake_upstream.queue(reasoning_stream())
    sdk = anthropic.Anthropic(base_url=cli_proxy, api_key=KEY, max_retries=0)
    with sdk.messages.stream(model=SPEC, max_tokens=64, messages=[{"role": "user", "content": "Hello"}]) as stream:
        final = stream.get_final_message()
    assert [block.type for block in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == "Plan: say hi." and final.content[0].signature == ""
    assert final.content[1].text.startswith("echo: ")
    execution = claude_up.requests_to()[-1].json
    assert execution["model"] == "claude-fake" and "Plan: say hi." in orjson.dumps(execution).decode()

