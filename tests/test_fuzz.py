"""Fuzz the chat and models endpoints of the real CLI proxy with hypothesis.

Every answer must be a success (JSON, or an SSE stream that ends with ``[DONE]`` or one error
event) or a well-formed OpenAI JSON error with a 4xx/5xx status other than 500, and the proxy
must still serve a normal request afterwards. The examples are derandomized (the same in every
run, so CI is stable) and bounded in number. ``pytest -s`` prints the count of answers by status.
"""

from __future__ import annotations

import string
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hookproxy.testing import FakeUpstream, run_cli_proxy, write_config
from tests.conftest import PROXY_KEY, upstream_block

STATUSES: Counter[int] = Counter()
FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PRINTABLE = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40).map(str.strip)


@pytest.fixture(scope="module")
def proxy_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    upstream = FakeUpstream().start()
    config = write_config(tmp_path_factory.mktemp("fuzz"), {
        "default_backend": "up", "max_body_bytes": 65536,
        "backends": {"up": upstream_block(upstream), "other": upstream_block(upstream)}})
    try:
        with run_cli_proxy("--config", str(config), "--api-key", PROXY_KEY,
                           env={"HOOKPROXY_DISABLE_PLUGINS": "qwen-oauth,hybrid"}) as (url, _process):
            yield url
    finally:
        upstream.stop()
        print("\nfuzz answers by status:", dict(sorted(STATUSES.items())))


def json_values(max_leaves: int = 10) -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=max_leaves)


models = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["m1", "up:m1", "other:m2", "up:m1|other:m2", "nope:m1", "up:m1?temperature=9",
                     "hybrid:[up:m1,other:m2]", "", " ", "up:", ":m1", "|", "up:m1\r\nx: y"]),
    json_values(3),
)
messages = st.one_of(
    st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "tool"]),
                                    "content": st.text(max_size=50) | json_values(4)}), max_size=3),
    json_values(5),
)
chat_bodies = st.fixed_dictionaries(
    {"model": models, "messages": messages},
    optional={"stream": st.booleans() | json_values(2), "stream_options": json_values(3),
              "temperature": json_values(1), "tools": json_values(5), "n": json_values(1)},
)
deep = st.integers(min_value=200, max_value=1100).map(
    lambda depth: b'{"model": "m1", "messages": [{"role": "user", "content": "x"}], "x": '
    + b"[" * depth + b"]" * depth + b"}")
raw_bodies = st.one_of(
    chat_bodies.map(orjson.dumps),
    st.binary(max_size=200),
    st.text(max_size=200).map(str.encode),
    deep,
    json_values(20).map(orjson.dumps),
)
headers = st.dictionaries(
    st.sampled_from(["x-api-key", "content-type", "accept", "x-forwarded-for", "x-hookproxy-loop-guard",
                     "accept-encoding", "user-agent", "x-custom"]),
    PRINTABLE, max_size=3)


def check(response: httpx.Response, method: str) -> None:
    STATUSES[response.status_code] += 1
    assert response.status_code != 500 and response.status_code < 600, response.text[:500]
    if method == "HEAD":
        return
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["message"], str) and error["message"]
        assert {"type", "param", "code"} <= set(error)
    elif response.headers.get("content-type", "").startswith("text/event-stream"):
        last = [line for line in response.text.splitlines() if line.startswith("data: ")][-1]
        assert last == "data: [DONE]" or "error" in orjson.loads(last[6:])
    else:
        assert isinstance(response.json(), (dict, list))


@FUZZ
@given(body=raw_bodies, extra=headers, path=st.sampled_from(["/v1/chat/completions", "/chat/completions"]),
       key=st.sampled_from([PROXY_KEY] * 9 + ["wrong"]))
def test_fuzz_chat_completions(proxy_url: str, body: bytes, extra: dict[str, str], path: str, key: str) -> None:
    sent = {"authorization": f"Bearer {key}", "content-type": "application/json", **extra}
    response = httpx.post(proxy_url + path, content=body, headers=sent, timeout=30)
    check(response, "POST")


@FUZZ
@given(model_id=st.text(alphabet=string.printable + "模型é/%?#:|", max_size=40),
       method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"]),
       prefix=st.sampled_from(["/v1/models", "/models", "/v1/models/", "/health", "/health/", "/-/plugins"]),
       extra=headers)
def test_fuzz_models_and_other_endpoints(proxy_url: str, model_id: str, method: str, prefix: str,
                                         extra: dict[str, str]) -> None:
    path = prefix if prefix.endswith(("s", "h")) else prefix + quote(model_id, safe="/:|?=&")
    url = httpx.URL(proxy_url).copy_with(raw_path=path.encode())
    response = httpx.request(method, url, headers={"authorization": f"Bearer {PROXY_KEY}", **extra}, timeout=30)
    assert response.status_code != 307 and "location" not in response.headers
    check(response, method)


def test_the_proxy_still_serves_after_the_fuzz(proxy_url: str) -> None:
    response = httpx.post(proxy_url + "/v1/chat/completions", timeout=30,
                          json={"model": "up:m1", "messages": [{"role": "user", "content": "still here?"}]},
                          headers={"authorization": f"Bearer {PROXY_KEY}"})
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "echo: still here?"
