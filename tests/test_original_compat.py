"""What users of the original proxy already send and configure keeps working here.

Proxy keys in Gemini's places, the original's flags and environment variables, and
``model_defaults``; each through the public surface (HTTP, the CLI, files on disk).
"""

from __future__ import annotations

import logging

import httpx
import pytest

from .conftest import PROXY_KEY

USER = [{"role": "user", "content": "hi"}]
BODY = {"model": "m1", "messages": USER}


@pytest.mark.parametrize("where", ["x-goog-api-key", "query"])
def test_gemini_style_proxy_keys_are_accepted(proxy_for, where):
    running = proxy_for()
    url = running.url + "/v1/chat/completions"
    if where == "query":
        response = httpx.post(url, params={"api_key": PROXY_KEY}, json=BODY)
    else:
        response = httpx.post(url, headers={where: PROXY_KEY}, json=BODY)
    assert response.status_code == 200
    assert httpx.get(running.url + "/v1/models", params={"api_key": PROXY_KEY}).status_code == 200


@pytest.mark.parametrize("where", ["x-goog-api-key", "query"])
def test_a_wrong_gemini_style_key_is_401_and_never_logged(proxy_for, caplog, where):
    caplog.set_level(logging.DEBUG)
    running = proxy_for()
    wrong = "sk-wrong-query-key-987"
    url = running.url + "/v1/chat/completions"
    if where == "query":
        response = httpx.post(url, params={"api_key": wrong}, json=BODY)
    else:
        response = httpx.post(url, headers={where: wrong}, json=BODY)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert wrong not in response.text
    proxy_side = [r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert not any(wrong in line for line in proxy_side)
