"""qwen-oauth asks upstream for usage on every stream; the plain SDK loop must still work."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import openai

from hookproxy.testing import FakeUpstream, RunningProxy
from hookproxy_qwen_oauth.testing import QwenService, write_creds

USER = [{"role": "user", "content": "你好 there"}]


def test_the_usage_chunk_qwen_asked_for_reaches_only_clients_that_asked(
    qwen: QwenService, fake_upstream: FakeUpstream, creds_path: Path, qwen_config: Callable[..., Path],
    make_proxy: Callable[..., RunningProxy],
) -> None:
    write_creds(creds_path)
    proxy = make_proxy(qwen_config())
    sdk = openai.OpenAI(base_url=proxy.url + "/v1", api_key="unused", max_retries=0)
    stream = sdk.chat.completions.create(model="coder-model", messages=USER, stream=True)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream) == "echo: 你好 there"
    assert fake_upstream.requests_to()[-1].json["stream_options"] == {"include_usage": True}
    asked = list(sdk.chat.completions.create(model="coder-model", messages=USER, stream=True,
                                             stream_options={"include_usage": True}))
    assert asked[-1].choices == [] and asked[-1].usage is not None and asked[-1].usage.total_tokens > 0
