"""hookproxy's HTTP/1.1 protocol on its own, serving a small ASGI app: what it writes when the app
answers with headers no HTTP answer may carry (a line break would let a value start a header of
its own, or end the head early)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from hookproxy.config import Settings
from hookproxy.server import protocol_class
from hookproxy.testing import serve_app


async def app(scope, receive, send):  # noqa: ANN001, ANN201 - a bare ASGI app
    if scope["type"] != "http":
        return
    value = {"/ok": b"fine", "/crlf": b"a\r\nx-injected: 1", "/lf": b"a\nx-injected: 1", "/nul": b"a\x00b",
             "/tab": b"a\tb"}[scope["path"]]
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"X-Value", value), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    served = serve_app(app, http=protocol_class(Settings()))
    yield served.url
    served.stop()


@pytest.mark.parametrize("path", ["/ok", "/tab"])
def test_a_valid_header_value_is_sent_as_is(url: str, path: str) -> None:
    response = httpx.get(url + path)
    assert response.status_code == 200
    assert response.text == "ok"
    assert response.headers["x-value"] == {"/ok": "fine", "/tab": "a\tb"}[path]  # names go out lower-case


@pytest.mark.parametrize("path", ["/crlf", "/lf", "/nul"])
def test_a_header_value_with_a_control_character_never_reaches_the_client(url: str, path: str) -> None:
    with pytest.raises(httpx.RemoteProtocolError):  # the connection closes with no answer written
        httpx.get(url + path)
    assert httpx.get(url + "/ok").status_code == 200  # and the server goes on serving
