"""Plugin discovery and the hooks, seen from a plugin author's side.

The third-party plugin here is a real distribution (a dist-info on PYTHONPATH) found through the
``hookproxy`` entry-point group by a proxy started from the CLI, exactly as `pip install` would.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import openai
import pytest

import hookproxy
from hookproxy import hookspecs
from hookproxy.errors import ConfigError
from hookproxy.openai_compatible import OpenAICompatibleBackend
from hookproxy.plugins import list_plugins, make_plugin_manager
from hookproxy.testing import Canned, content_stream, eventually, run_cli_proxy, write_config
from tests.conftest import PROXY_KEY, core_pm

ROOT = Path(__file__).resolve().parent.parent

ECHO_PLUGIN = '''
"""A complete third-party backend: answers every request itself, upper-cased."""
import time
import orjson
import hookproxy
from pydantic import BaseModel


class EchoSettings(BaseModel):
    echo_prefix: str = ""


class ShoutBackend(hookproxy.Backend):
    def __init__(self, instance, proxy):
        super().__init__(instance)
        self.proxy = proxy

    async def handle(self, call, proxy):
        text = call.body["messages"][-1]["content"].upper()
        prefix = proxy.settings_for(EchoSettings).echo_prefix
        body = {"id": "x", "object": "chat.completion", "created": int(time.time()), "model": call.body["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": prefix + text}}]}
        return hookproxy.Reply(body=orjson.dumps(body), headers={"content-type": "application/json"})


@hookproxy.hookimpl
def settings_model():
    return EchoSettings


@hookproxy.hookimpl
def resolve_backend(instance, proxy):
    if instance.connector == "shout":
        return ShoutBackend(instance, proxy)
'''


def make_distribution(folder: Path, name: str, module_source: str, ep_name: str) -> Path:
    module = name.replace("-", "_")
    (folder / f"{module}.py").write_text(textwrap.dedent(module_source))
    info = folder / f"{module}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[hookproxy]\n{ep_name} = {module}\n")
    return folder


def test_a_third_party_plugin_is_discovered_and_serves_a_request(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    make_distribution(site, "hookproxy-shout", ECHO_PLUGIN, "shout")
    config = write_config(tmp_path / "cfg", {"default_backend": "shout", "auth": {"api_keys": [PROXY_KEY]}},
                          {"shout.default": {"extra": {}}})
    env = {"PYTHONPATH": str(site), "HOOKPROXY_ECHO_PREFIX": ">> "}
    listing = subprocess.run([sys.executable, "-m", "hookproxy", "plugins", "--config", str(config)],
                             env={**os.environ, **env}, capture_output=True, text=True, check=True).stdout
    assert re.search(r"^shout \(hookproxy-shout 1\.2\.3\): hooks resolve_backend, settings_model$", listing, re.M)
    with run_cli_proxy("--config", str(config), env=env) as (url, _process):
        sdk = openai.OpenAI(base_url=url + "/v1", api_key=PROXY_KEY, max_retries=0)
        reply = sdk.chat.completions.create(model="anything", messages=[{"role": "user", "content": "hi there"}])
        assert reply.choices[0].message.content == ">> HI THERE"
    helptext = subprocess.run([sys.executable, "-m", "hookproxy", "--help"], env={**os.environ, **env},
                              capture_output=True, text=True).stdout
    assert "--echo-prefix" in helptext


def test_disabled_and_broken_plugins_are_skipped_by_name(tmp_path, monkeypatch, caplog):
    site = tmp_path / "site"
    site.mkdir()
    make_distribution(site, "hookproxy-shout", ECHO_PLUGIN, "shout")
    make_distribution(site, "hookproxy-broken", "raise ImportError('missing dependency foo')\n", "broken")
    monkeypatch.syspath_prepend(str(site))
    names = {info.name for info in list_plugins(make_plugin_manager())}
    assert {"shout", "openai-compatible"} <= names and "broken" not in names
    assert "plugin 'broken' (hookproxy-broken) failed to import" in caplog.text
    monkeypatch.setenv("HOOKPROXY_DISABLE_PLUGINS", "shout, other")
    assert "shout" not in {info.name for info in list_plugins(make_plugin_manager())}


def test_a_misspelt_hook_implementation_fails_at_startup_with_its_name():
    class Typo:
        @hookproxy.hookimpl
        def resolve_backed(self, instance):
            return None

    with pytest.raises(ConfigError, match="resolve_backed"):
        make_plugin_manager(load_entrypoints=False, extra=[("typo", Typo())])


def test_async_implementations_of_firstresult_hooks_are_refused():
    class Eager:
        @hookproxy.hookimpl
        async def on_rate_limit(self, backend, call, error):
            return None

    with pytest.raises(ConfigError, match="on_rate_limit must not be 'async def'"):
        make_plugin_manager(load_entrypoints=False, extra=[("eager", Eager())])


# --- one test per hook (test_hook_<name>), checked by test_every_hook_has_a_test -----------------


def test_hook_settings_model(tmp_path):
    from pydantic import BaseModel, Field

    class Knobs(BaseModel):
        shout_level: int = Field(1, ge=1)

    class Plugin:
        @hookproxy.hookimpl
        def settings_model(self):
            return Knobs

    path = write_config(tmp_path, {"backends": {"shout_level": 2}})
    from hookproxy.factory import build_proxy

    assert build_proxy(path, pm=core_pm(("k", Plugin())), env={}).settings_for(Knobs).shout_level == 2
    assert build_proxy(path, pm=core_pm(("k", Plugin())), env={"HOOKPROXY_SHOUT_LEVEL": "3"}).settings_for(
        Knobs).shout_level == 3
    assert build_proxy(path, {"shout_level": "4"}, pm=core_pm(("k", Plugin())), env={}).settings_for(
        Knobs).shout_level == 4
    with pytest.raises(ConfigError, match="^--shout-level: .*greater than or equal to 1"):
        build_proxy(path, {"shout_level": "0"}, pm=core_pm(("k", Plugin())), env={})
    with pytest.raises(ConfigError, match="^environment variable HOOKPROXY_SHOUT_LEVEL: "):
        build_proxy(path, pm=core_pm(("k", Plugin())), env={"HOOKPROXY_SHOUT_LEVEL": "0"})


def test_hook_resolve_backend(proxy_for, fake_upstream):
    class Renamed(hookproxy.HTTPBackend):
        def models(self):
            return ["only-this"]

    class Plugin:
        @hookproxy.hookimpl
        def resolve_backend(self, instance):
            if instance.connector == "renamed":
                return Renamed(instance)

    running = proxy_for(instances={"renamed.one": {"api_url": fake_upstream.url}}, plugins=(("renamed", Plugin()),))
    ids = [m["id"] for m in httpx.get(running.url + "/v1/models", headers={"x-api-key": PROXY_KEY}).json()["data"]]
    assert "one:only-this" in ids  # the shortest name that routes there


def test_hook_prepare_request(proxy_for, fake_upstream):
    class Plugin:
        @hookproxy.hookimpl
        def prepare_request(self, backend, call, request):
            async def add() -> None:
                request.headers["x-added"] = backend.id
                request.json["injected"] = call.attempt
            return add()

    running = proxy_for(plugins=(("adder", Plugin()),))
    httpx.post(running.url + "/v1/chat/completions", headers={"x-api-key": PROXY_KEY},
               json={"model": "m1", "messages": [{"role": "user", "content": "x"}]})
    sent = fake_upstream.requests_to()[-1]
    assert sent.headers["x-added"] == "up" and sent.json["injected"] == 1


def test_hook_on_rate_limit(proxy_for, fake_upstream):
    seen = []

    class Plugin:
        @hookproxy.hookimpl
        def on_rate_limit(self, backend, call, error):
            seen.append((error.status, call.attempt))
            return hookproxy.RetryDecision("retry", 0.0, "test") if call.attempt == 1 else None

    running = proxy_for({"failure_handling": {"max_silent_wait": 0}}, plugins=(("retrier", Plugin()),))
    fake_upstream.queue(Canned(status=429, json={"error": {"message": "busy"}}))
    response = httpx.post(running.url + "/v1/chat/completions", headers={"x-api-key": PROXY_KEY},
                          json={"model": "m1", "messages": [{"role": "user", "content": "x"}]})
    assert response.status_code == 200
    assert seen == [(429, 1)]
    assert len(fake_upstream.requests_to()) == 2


def test_hook_stream_response(proxy_for, fake_upstream):
    class Upper:
        @hookproxy.hookimpl
        def stream_response(self, backend, call, stream):
            async def transform():
                async for event in stream.events():
                    if event.is_done:
                        yield b"data: [DONE]\n\n"
                        continue
                    data = event.json()
                    for choice in data["choices"]:
                        if choice["delta"].get("content"):
                            choice["delta"]["content"] = choice["delta"]["content"].upper()
                    yield hookproxy.encode_event(data)
            return transform()

    running = proxy_for(plugins=(("upper", Upper()),))
    fake_upstream.queue(Canned(chunks=[b'data: {"choices":[{"index":0,"delta":{"content":"h\xc3', b'\xa9llo"}}]}\n',
                                       b"\ndata: [DONE]\n\n"]))
    sdk = openai.OpenAI(base_url=running.url + "/v1", api_key=PROXY_KEY, max_retries=0)
    stream = sdk.chat.completions.create(model="m1", messages=[{"role": "user", "content": "x"}], stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream) == "HÉLLO"


class Recorder:
    """An observer plugin that keeps every event, and one that always raises."""

    def __init__(self) -> None:
        self.attempts: list[hookproxy.AttemptEnded] = []
        self.requests: list[hookproxy.RequestEnded] = []

    @hookproxy.hookimpl
    def attempt_ended(self, event):
        self.attempts.append(event)

    @hookproxy.hookimpl
    def request_ended(self, event, proxy):
        assert proxy.backends
        self.requests.append(event)


class Broken:
    @hookproxy.hookimpl
    def attempt_ended(self, event):
        raise RuntimeError("observer bug")

    @hookproxy.hookimpl
    def request_ended(self, event):
        raise RuntimeError("observer bug")


class ProxyFirst:
    """An observer that names its arguments in another order: they are passed by name."""

    def __init__(self) -> None:
        self.seen: list[tuple[object, object]] = []

    @hookproxy.hookimpl
    def request_ended(self, proxy, event):
        self.seen.append((proxy, event))


def test_hook_attempt_ended(proxy_for, fake_upstream):
    recorder = Recorder()
    running = proxy_for({"failure_handling": {"min_retry_wait": 0.01}}, plugins=(("rec", recorder),))
    fake_upstream.queue(Canned(status=503, json={"error": {"message": "busy"}}))
    response = httpx.post(running.url + "/v1/chat/completions", headers={"x-api-key": PROXY_KEY},
                          json={"model": "m1", "messages": [{"role": "user", "content": "x"}]})
    assert response.status_code == 200
    eventually(lambda: len(recorder.requests) == 1, within=5, what="request_ended")
    failed, answered = recorder.attempts
    assert (failed.backend, failed.model, failed.status, failed.error, failed.decision) == ("up", "m1", 503, "http",
                                                                                           "retry")
    assert (answered.attempt, answered.index, answered.status, answered.decision) == (2, 2, 200, "answered")
    assert failed.request_id == answered.request_id == response.headers["x-request-id"]
    assert failed.duration >= 0 and answered.ttfb is not None


def test_hook_request_ended(proxy_for, fake_upstream, caplog):
    recorder = Recorder()
    other_order = ProxyFirst()
    running = proxy_for(plugins=(("broken", Broken()), ("rec", recorder), ("other-order", other_order)))
    for _ in range(2):  # the broken observer is logged once, and never reaches the client
        response = httpx.post(running.url + "/v1/chat/completions",
                              headers={"x-api-key": PROXY_KEY, "x-request-id": "client-id-1"},
                              json={"model": "m1", "messages": [{"role": "user", "content": "x"}]})
        assert response.status_code == 200 and response.headers["x-request-id"] == "client-id-1"
    eventually(lambda: len(recorder.requests) == 2, within=5, what="request_ended")
    event = recorder.requests[0]
    assert (event.frontend, event.backend, event.model, event.status, event.stream) == ("openai-chat", "up", "m1",
                                                                                       200, False)
    assert event.request_id == "client-id-1" and event.key_id and PROXY_KEY not in event.key_id
    assert event.usage is not None and (event.usage.input, event.usage.output) == (1, 1)
    assert event.duration >= event.overhead >= 0 and event.attempts == 1 and event.error is None
    assert caplog.text.count("observer 'broken' failed") == 1
    eventually(lambda: len(other_order.seen) == 2, within=5, what="request_ended (proxy, event)")
    assert all(proxy.backends and isinstance(event, hookproxy.RequestEnded) for proxy, event in other_order.seen)


def test_every_hook_has_a_test_and_is_documented_in_the_readme():
    names = [name for name in hookspecs.__all__ if name != "hookimpl"]
    tests = set(globals())
    readme = (ROOT / "README.md").read_text()
    for name in names:
        assert f"test_hook_{name}" in tests, name
        assert f"`{name}(" in readme, f"README does not document {name}"


def test_plugins_command_lists_the_builtin_connector(tmp_path):
    config = write_config(tmp_path, {})
    out = subprocess.run([sys.executable, "-m", "hookproxy", "plugins", "--config", str(config)],
                         capture_output=True, text=True, check=True).stdout
    assert re.search(r"^openai-compatible \(hookproxy [\d.]+\): hooks resolve_backend$", out, re.M)


def test_stream_transform_never_emits_partial_events(proxy_for, fake_upstream):
    """With a transforming plugin the stream is parsed by lines with carry-over (split anywhere)."""
    body = b"".join(b'data: {"choices":[{"index":0,"delta":{"content":"%s"}}]}\n\n' % c for c in [b"a", b"b"])
    body += b"data: [DONE]\n\n"

    class Count:
        events: list[str] = []

        @hookproxy.hookimpl
        def stream_response(self, stream):
            async def relay():
                async for event in stream.events():
                    Count.events.append(event.data or "")
                    yield hookproxy.encode_event(event.data or "")
            return relay()

    running = proxy_for(plugins=(("count", Count()),))
    fake_upstream.queue(Canned(chunks=[body[i:i + 3] for i in range(0, len(body), 3)]))
    with httpx.stream("POST", running.url + "/v1/chat/completions", headers={"x-api-key": PROXY_KEY},
                      json={"model": "m1", "messages": [{"role": "user", "content": "x"}], "stream": True}) as r:
        r.read()
    assert Count.events[-1] == "[DONE]" and len(Count.events) == 3
    assert all(e.startswith("{") and e.endswith("}") for e in Count.events[:2])


def test_content_stream_helper_is_valid_sse():
    assert content_stream(["a"])[1]["choices"][0]["delta"] == {"content": "a"}


def test_the_readme_plugin_works_as_written(tmp_path, fake_upstream):
    """The 'Write your own backend' example, installed as a distribution, serves a request."""
    section = (ROOT / "README.md").read_text().split("## Write your own backend", 1)[1]
    source = section.split("```python", 1)[1].split("```", 1)[0]
    toml = section.split("```toml", 1)[1].split("```", 1)[0]
    entry = re.search(r"^(\S+) = \"(\S+)\"$", toml.split("[project.entry-points.hookproxy]")[1], re.M)
    assert entry is not None
    site = tmp_path / "site"
    site.mkdir()
    make_distribution(site, "hookproxy-shouty", source, entry.group(1))
    config = write_config(tmp_path / "cfg", {"default_backend": "shouty"},
                          {"shouty.default": {"api_url": fake_upstream.url, "models": ["m"]}})
    with run_cli_proxy("--config", str(config), "--shout", env={"PYTHONPATH": str(site)}) as (url, _):
        sdk = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        reply = sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "quiet"}])
    assert reply.choices[0].message.content == "echo: QUIET"
    assert fake_upstream.requests_to()[-1].headers["x-shouty"] == "1"


class Reverse(hookproxy.Frontend):
    """A test protocol: ``{"model", "say"}`` in, ``{"said"}`` out (reversed), its own error shape,
    and endpoints sharing ``GET /v1/models`` and ``/v1/models/{id}`` only when the ``x-reverse``
    header is sent."""

    name = "reverse"
    protocol = "reverse-protocol"
    paths = ("/v1/reverse",)
    keepalive = b"event: ping\ndata: {}\n\n"

    def parse(self, request):
        say = request.body.get("say")
        if not isinstance(say, str):
            raise hookproxy.InvalidRequest("'say' must be a string")
        chat = {"model": request.body["model"], "messages": [{"role": "user", "content": say}]}
        return hookproxy.ClientRequest(self.name, self.protocol, request.body["model"], False, chat,
                                       native=request.body, headers=dict(request.headers))

    def render_body(self, body, client):
        import orjson

        text = orjson.loads(body)["choices"][0]["message"]["content"]
        return orjson.dumps({"said": text[::-1]})

    def error_body(self, error):
        return {"failure": error.message}

    def endpoints(self):
        async def models(request, proxy):
            return hookproxy.JSONAnswer({"reversed": [model[::-1] for model, _, _ in proxy.routable_models()]})

        async def model(request, proxy):
            return hookproxy.JSONAnswer({"reversed": request.path[len("/v1/models/"):][::-1]})

        def reverse(request):
            return "x-reverse" in request.headers

        return [hookproxy.Endpoint("GET", "/v1/models", models, when=reverse),
                hookproxy.Endpoint("GET", "/v1/models/", model, when=reverse, prefix=True)]


class ReversePlugin:
    seen_backends: list[str] = []

    @hookproxy.hookimpl
    def register_frontends(self, register, proxy):
        ReversePlugin.seen_backends = sorted(proxy.backends)  # resolved before front ends register
        register(Reverse())


def test_hook_register_frontends(proxy_for, fake_upstream):
    """A plugin's front end serves its path through the core's routing and auth, in its own shapes."""
    running = proxy_for(plugins=(("reverse", ReversePlugin()),))
    assert ReversePlugin.seen_backends == ["up"]
    with running.client(headers={"x-api-key": PROXY_KEY}) as client:
        answer = client.post("/v1/reverse", json={"model": "up:m1", "say": "hello"})
        assert answer.status_code == 200 and answer.json() == {"said": "olleh :ohce"}  # the fake echoes
        assert answer.headers["x-hookproxy-backend"] == "up"
        assert fake_upstream.requests_to()[-1].json["messages"] == [{"role": "user", "content": "hello"}]
        invalid = client.post("/v1/reverse", json={"model": "m1", "say": 3})
        assert invalid.status_code == 400 and invalid.json() == {"failure": "'say' must be a string"}
        assert client.get("/v1/reverse").status_code == 405
        assert client.get("/v1/models", headers={"x-reverse": "1"}).json() == {"reversed": ["1m:pu", "2m:pu"]}
        assert client.get("/v1/models").json()["object"] == "list"  # the core's own list without the header
        assert client.get("/v1/models/up:vendor/m1", headers={"x-reverse": "1"}).json() == {"reversed": "1m/rodnev:pu"}
        assert client.get("/v1/models/up:m1").json()["object"] == "model"  # the core's own, without the header
    unauthorized = httpx.post(running.url + "/v1/reverse", json={"model": "m1", "say": "x"})
    assert unauthorized.status_code == 401 and "invalid or missing proxy API key" in unauthorized.json()["failure"]
    assert httpx.get(running.url + "/v1/models", headers={"x-reverse": "1"}).status_code == 401
    assert httpx.get(running.url + "/v1/models/up:m1", headers={"x-reverse": "1"}).status_code == 401


class LookupReverse(Reverse):
    """A front end whose parse looks something up first: it returns an awaitable."""

    name = "lookup-reverse"
    paths = ("/v1/reverse-later",)

    def parse(self, request):
        if request.body.get("say") == "unknown":
            raise hookproxy.InvalidRequest("refused before any lookup")
        parsed = super().parse(request)

        async def looked_up():
            await asyncio.sleep(0)
            if parsed.body["messages"][0]["content"] == "missing":
                raise hookproxy.InvalidRequest("no such thing")
            return parsed

        return looked_up()


def test_a_front_end_parse_may_return_an_awaitable(proxy_for, fake_upstream):
    class LookupPlugin:
        @hookproxy.hookimpl
        def register_frontends(self, register):
            register(LookupReverse())

    running = proxy_for(plugins=(("lookup", LookupPlugin()),))
    with running.client(headers={"x-api-key": PROXY_KEY}) as client:
        answer = client.post("/v1/reverse-later", json={"model": "m1", "say": "abc"})
        assert answer.status_code == 200 and answer.json() == {"said": "cba :ohce"}
        missing = client.post("/v1/reverse-later", json={"model": "m1", "say": "missing"})
        assert missing.status_code == 400 and missing.json() == {"failure": "no such thing"}
        refused = client.post("/v1/reverse-later", json={"model": "m1", "say": "unknown"})
        assert refused.status_code == 400 and refused.json() == {"failure": "refused before any lookup"}
    assert len(fake_upstream.requests_to()) == 1


def test_two_front_ends_claiming_one_path_fail_at_startup(tmp_path):
    class Twin(Reverse):
        name = "twin"

    class TwinPlugin:
        @hookproxy.hookimpl
        def register_frontends(self, register):
            register(Twin())

    from hookproxy.factory import build_proxy

    config = write_config(tmp_path, {})
    claim = r"front ends '(twin|reverse)' and '(twin|reverse)' both claim POST /v1/reverse"
    with pytest.raises(ConfigError, match=claim):
        build_proxy(config, pm=core_pm(("reverse", ReversePlugin()), ("twin", TwinPlugin())))


def test_the_readme_front_end_works_as_written(tmp_path, fake_upstream):
    """The 'Write your own front end' example, installed as a distribution, serves both ways."""
    section = (ROOT / "README.md").read_text().split("## Write your own front end", 1)[1]
    source = section.split("```python", 1)[1].split("```", 1)[0]
    site = tmp_path / "site"
    site.mkdir()
    make_distribution(site, "hookproxy-textcomplete", source, "textcomplete")
    config = write_config(tmp_path / "cfg", {"default_backend": "up"},
                          {"openai-compatible.up": {"api_url": fake_upstream.url, "models": ["m"]}})
    with run_cli_proxy("--config", str(config), env={"PYTHONPATH": str(site)}) as (url, _):
        sdk = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        reply = sdk.completions.create(model="m", prompt="quiet please")
        assert reply.choices[0].text == "echo: quiet please"  # the fake upstream echoes the last user message
        fake_upstream.queue(Canned(sse=content_stream(["Hel", "lo"])))
        pieces = [c.choices[0].text for c in sdk.completions.create(model="m", prompt="x", stream=True)]
        assert "".join(pieces) == "Hello"
    assert fake_upstream.requests_to()[0].json["messages"] == [{"role": "user", "content": "quiet please"}]

class _ElsewhereBackend(hookproxy.HTTPBackend):
    """A backend class no configured backend has."""


class _ElsewherePlugin:
    def __init__(self) -> None:
        self.calls = 0

    @hookproxy.hookimpl
    @hookproxy.for_backends(_ElsewhereBackend)
    def prepare_request(self, request: hookproxy.UpstreamRequest) -> None:
        self.calls += 1
        request.headers["x-marked"] = "elsewhere"


class _HerePlugin(_ElsewherePlugin):
    @hookproxy.hookimpl
    @hookproxy.for_backends(OpenAICompatibleBackend)
    def prepare_request(self, request: hookproxy.UpstreamRequest) -> None:
        self.calls += 1
        request.headers["x-marked"] = "here"


def test_a_hook_marked_for_other_backends_is_not_called_for_this_one(proxy_for, fake_upstream):
    elsewhere, here = _ElsewherePlugin(), _HerePlugin()
    running = proxy_for(plugins=(("elsewhere", elsewhere), ("here", here)))
    sdk = openai.OpenAI(base_url=running.url + "/v1", api_key=PROXY_KEY, max_retries=0)
    for _ in range(2):
        sdk.chat.completions.create(model="up:m1", messages=[{"role": "user", "content": "hi"}])
    assert (elsewhere.calls, here.calls) == (0, 2)
    assert fake_upstream.requests_to()[-1].headers["x-marked"] == "here"


def test_with_only_a_hook_for_other_backends_the_request_goes_out_unchanged(proxy_for, fake_upstream):
    elsewhere = _ElsewherePlugin()
    running = proxy_for(plugins=(("elsewhere", elsewhere),))
    sdk = openai.OpenAI(base_url=running.url + "/v1", api_key=PROXY_KEY, max_retries=0)
    reply = sdk.chat.completions.create(model="up:m1", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "echo: hi"
    assert elsewhere.calls == 0 and "x-marked" not in fake_upstream.requests_to()[-1].headers
