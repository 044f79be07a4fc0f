"""The upstream seam: any httpx transport can carry the chat calls (respx in unit tests), and the
default aiohttp transport maps failures to the httpx errors the proxy turns into 502/504."""

from __future__ import annotations

import httpx
import pytest
import respx

from hookproxy.app import create_app
from hookproxy.factory import build_proxy
from hookproxy.testing import chat_completion, write_config
from hookproxy.transport import AiohttpTransport
from tests.conftest import core_pm

BODY = {"model": "m1", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def router():
    with respx.mock(base_url="http://upstream.test/v1", assert_all_called=False) as mock:
        yield mock


async def call_proxy(tmp_path, transport, body):
    path = write_config(tmp_path, {"default_backend": "up", "backends": {"up": {
        "connector": "openai-compatible", "api_url": "http://upstream.test/v1", "api_key": "k"}}})
    proxy = build_proxy(path, pm=core_pm(), env={}, transport=transport)
    await proxy.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(proxy)), base_url="http://p") as c:
            return await c.post("/v1/chat/completions", json=body)
    finally:
        await proxy.aclose()


async def test_a_respx_router_serves_as_the_upstream(tmp_path, router):
    route = router.post("/chat/completions").mock(return_value=httpx.Response(200, json=chat_completion("mocked")))
    response = await call_proxy(tmp_path, httpx.MockTransport(router.async_handler), BODY)
    assert response.json()["choices"][0]["message"]["content"] == "mocked"
    assert route.calls.last.request.headers["authorization"] == "Bearer k"


async def test_a_streamed_answer_through_an_injected_transport(tmp_path, router):
    sse = b'data: {"choices":[{"index":0,"delta":{"content":"ok"}}]}\n\ndata: [DONE]\n\n'
    router.post("/chat/completions").mock(return_value=httpx.Response(
        200, content=sse, headers={"content-type": "text/event-stream"}))
    response = await call_proxy(tmp_path, httpx.MockTransport(router.async_handler), {**BODY, "stream": True})
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.content == sse


async def test_upstream_errors_keep_status_through_an_injected_transport(tmp_path, router):
    router.post("/chat/completions").mock(return_value=httpx.Response(
        429, json={"error": {"message": "slow", "type": "rate_limit_error"}}, headers={"retry-after": "120"}))
    response = await call_proxy(tmp_path, httpx.MockTransport(router.async_handler), BODY)
    assert response.status_code == 429 and response.headers["retry-after"] == "120"


async def test_the_aiohttp_transport_speaks_httpx_for_plugins(fake_upstream):
    transport = AiohttpTransport()
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.post(fake_upstream.url + "/chat/completions", json=BODY)
        assert response.json()["choices"][0]["message"]["content"] == "echo: hi"
        with pytest.raises(httpx.ConnectError):
            await client.get("http://127.0.0.1:9/")
