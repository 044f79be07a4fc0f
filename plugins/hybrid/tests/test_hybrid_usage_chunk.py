"""A hybrid whose execution side sends a usage chunk must not break the plain SDK loop."""

from __future__ import annotations

import openai

from hookproxy.testing import Canned, content_stream, usage_chunk

from .conftest import USER, minimax_stream


def test_the_execution_sides_usage_chunk_is_kept_from_clients_that_did_not_ask(start, fakes):
    fakes.minimax.queue(minimax_stream())
    fakes.qwen.queue(Canned(sse=[*content_stream(["Done", "."], model="qwen3-coder-plus"), usage_chunk()]))
    running = start()
    sdk = openai.OpenAI(base_url=running.url + "/v1", api_key="unused", max_retries=0)
    stream = sdk.chat.completions.create(model="hybrid:[minimax:MiniMax-M2,qwen-oauth:qwen3-coder-plus]",
                                         messages=USER, stream=True)
    chunks = list(stream)
    assert all(chunk.choices for chunk in chunks)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == "Done."
    assert "Plan:" in "".join(getattr(chunk.choices[0].delta, "reasoning_content", None) or "" for chunk in chunks)
