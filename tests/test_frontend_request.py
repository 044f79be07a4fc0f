"""What a front end reads of an incoming request (``hookproxy.HTTPRequest``)."""

from __future__ import annotations

from hookproxy import HTTPRequest

SCOPE = {"type": "http", "method": "POST", "path": "/v1/messages", "query_string": b"api_key=sk-query",
         "headers": [(b"anthropic-version", b"2023-06-01"), (b"authorization", b"Bearer sk-secret"),
                     (b"x-api-key", b"sk-other"), (b"x-goog-api-key", b"sk-gemini")]}


def test_one_header_is_read_like_the_mapping_but_never_a_proxy_key():
    request = HTTPRequest(SCOPE)
    assert request.header("anthropic-version") == "2023-06-01" == request.headers["anthropic-version"]
    assert request.header("anthropic-beta") is None
    for secret in ("authorization", "x-api-key", "x-goog-api-key"):
        assert request.header(secret) is None and secret not in request.headers
    assert "api_key" not in request.query
