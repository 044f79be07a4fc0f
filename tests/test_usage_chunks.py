"""Usage-only chunks and short retry waits, as the usual SDK loop meets them.

``for chunk in stream: chunk.choices[0].delta`` is how most client code reads a stream; a chunk
with ``"choices": []`` makes it raise IndexError. Such a chunk reaches only clients that asked for
it with ``stream_options.include_usage``. A retry wait shorter than a keep-alive interval stays
silent, so a 429 after it is still an HTTP 429 the SDK raises as RateLimitError.
"""

from __future__ import annotations

import openai
import pytest

from hookproxy.testing import Canned, content_stream, usage_chunk
from tests.conftest import PROXY_KEY

USER = [{"role": "user", "content": "hello"}]


@pytest.fixture
def sdk(proxy_for):
    running = proxy_for()
    return openai.OpenAI(base_url=running.url + "/v1", api_key=PROXY_KEY, max_retries=0)


def test_a_usage_chunk_the_client_did_not_ask_for_never_arrives(sdk, fake_upstream):
    """A backend that always sends usage (or was asked by a plugin) must not break the plain loop."""
    fake_upstream.queue(Canned(sse=[*content_stream(["Hel", "lo"]), usage_chunk()]))
    stream = sdk.chat.completions.create(model="m1", messages=USER, stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)  # IndexError if one had no choice
    assert text == "Hello"


def test_a_client_that_asked_for_usage_gets_the_usage_chunk_as_openai_sends_it(sdk, fake_upstream):
    fake_upstream.queue(Canned(sse=[*content_stream(["Hi"]), usage_chunk(prompt=11, completion=3)]))
    chunks = list(sdk.chat.completions.create(model="m1", messages=USER, stream=True,
                                              stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (11, 3)
    assert fake_upstream.requests_to()[-1].json["stream_options"] == {"include_usage": True}


def test_a_usage_chunk_in_the_same_read_as_content_is_cut_out_alone(sdk, fake_upstream):
    """Upstreams often flush the last content, the usage chunk and [DONE] in one write."""
    tail = (b'data: {"choices":[{"index":0,"delta":{"content":"!"},"finish_reason":"stop"}]}\n\n'
            b'data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}\n\n'
            b"data: [DONE]\n\n")
    head = b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":"Hey"}}]}\n\n'
    fake_upstream.queue(Canned(chunks=[head, tail]))
    chunks = list(sdk.chat.completions.create(model="m1", messages=USER, stream=True))
    assert [c.choices[0].delta.content for c in chunks] == ["Hey", "!"]
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_a_short_retry_wait_keeps_the_429_status_for_a_streaming_client(sdk, fake_upstream):
    """Retry-After 1 s is waited out silently; the second 429 is an HTTP 429 with Retry-After."""
    limited = Canned(status=429, json={"error": {"message": "slow down", "type": "rate_limit_error"}},
                     headers={"retry-after": "1"})
    fake_upstream.queue(limited, limited)
    with pytest.raises(openai.RateLimitError) as caught:
        list(sdk.chat.completions.create(model="m1", messages=USER, stream=True))
    assert caught.value.status_code == 429 and caught.value.response.headers["retry-after"] == "1"
    assert len(fake_upstream.requests_to()) == 2


def test_a_short_retry_wait_then_success_streams_normally(sdk, fake_upstream):
    limited = Canned(status=429, json={"error": {"message": "slow down"}}, headers={"retry-after": "1"})
    fake_upstream.queue(limited, Canned(sse=content_stream(["ok"])))
    with sdk.chat.completions.with_streaming_response.create(model="m1", messages=USER, stream=True) as raw:
        assert "x-hookproxy-failover" not in raw.headers  # not committed early: the backend is named
        assert raw.headers["x-hookproxy-backend"] == "up"
        text = "".join(chunk.choices[0].delta.content or "" for chunk in raw.parse())
    assert text == "ok"
