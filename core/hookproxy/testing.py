"""The test kit for hookproxy and its plugins: a scriptable fake upstream and proxy fixtures.

Plugin packages opt in with ``pytest_plugins = ["hookproxy.testing"]`` in their conftest.

* :class:`FakeUpstream` is a real OpenAI-compatible HTTP server on 127.0.0.1 (uvicorn in a
  thread). Script it with :meth:`FakeUpstream.queue` (canned statuses, headers, JSON, SSE
  events with delays, raw byte chunks, mid-stream resets, stalls) or a ``handler`` function;
  without a script it echoes the last user message (streamed word by word, with a usage chunk
  when ``stream_options.include_usage`` is set). Every request is recorded, and so is
  whether the client closed a stream before its end (``stream_log``).
* :func:`serve_app` runs any ASGI app (e.g. a hookproxy) on a free loopback port in a thread.
* :func:`run_cli_proxy` starts ``python -m hookproxy`` as a subprocess and waits for it.
* :class:`RedisServer` runs a private ``redis-server`` on a free loopback port (for shared state).
* Fixtures: ``fake_upstream``, ``make_fake_upstream``, ``make_proxy``, ``write_config`` and
  ``redis_server``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
import yaml

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


# --- the fake upstream -------------------------------------------------------------------------


@dataclass
class Canned:
    """One scripted answer.

    ``sse`` events (dicts are JSON-encoded, strings sent as ``data:`` as they are) are sent with
    ``delay`` seconds between them, then ``data: [DONE]`` unless ``done`` is false. ``chunks``
    sends exact bytes instead (to split events or UTF-8 characters anywhere). ``reset_after``
    aborts the connection after that many events or chunks; ``stall`` sleeps before answering.
    """

    status: int = 200
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    sse: list[Any] | None = None
    chunks: list[bytes] | None = None
    delay: float = 0.0
    done: bool = True
    stall: float = 0.0
    reset_after: int | None = None
    body: bytes | None = None


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return orjson.loads(self.body) if self.body else None


@dataclass
class StreamRecord:
    """What happened to one streamed answer: how many events went out, and if the client left."""

    path: str
    sent: int = 0
    planned: int = 0
    client_closed: bool = False
    finished: bool = False


def chat_completion(content: str, model: str = "fake-model", **extra: Any) -> dict[str, Any]:
    """A minimal OpenAI ``chat.completion`` body."""
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        **extra,
    }


def chunk(delta: dict[str, Any], finish_reason: str | None = None, model: str = "fake-model") -> dict[str, Any]:
    """One ``chat.completion.chunk`` event."""
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def usage_chunk(prompt: int = 5, completion: int = 7, model: str = "fake-model", **details: Any) -> dict[str, Any]:
    """The usage-only chunk (``"choices": []``) OpenAI sends last when ``include_usage`` was asked."""
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion, **details}
    return {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": model,
            "choices": [], "usage": usage}


def content_stream(pieces: list[str], model: str = "fake-model") -> list[dict[str, Any]]:
    """Role chunk, one chunk per piece, and a stop chunk."""
    events = [chunk({"role": "assistant", "content": ""}, model=model)]
    events += [chunk({"content": piece}, model=model) for piece in pieces]
    events.append(chunk({}, "stop", model=model))
    return events


def _last_user_text(body: Any) -> str:
    try:
        for message in reversed(body["messages"]):
            if message.get("role") == "user":
                content = message.get("content")
                if isinstance(content, list):
                    return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
                return str(content)
    except (KeyError, TypeError, AttributeError):
        pass
    return ""


class FakeUpstream:
    """An OpenAI-compatible server on 127.0.0.1 whose answers tests script."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.stream_log: list[StreamRecord] = []
        self.handler: Callable[[RecordedRequest], Canned | None] | None = None
        self._queues: dict[str, list[Canned]] = {}
        self._server: ServedApp | None = None
        self._lock = threading.Lock()

    # scripting
    def queue(self, *answers: Canned, path: str = "/v1/chat/completions") -> None:
        """Answer the next requests to ``path`` with these, in order (then fall back to echo)."""
        with self._lock:
            self._queues.setdefault(path, []).extend(answers)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.stream_log.clear()
            self._queues.clear()
            self.handler = None

    def requests_to(self, path: str = "/v1/chat/completions") -> list[RecordedRequest]:
        return [request for request in self.requests if request.path == path]

    # serving
    @property
    def base_url(self) -> str:
        assert self._server is not None, "FakeUpstream.start() first"
        return self._server.url

    @property
    def url(self) -> str:
        """The OpenAI base URL (``.../v1``) to put in a backend's ``api_url``."""
        return self.base_url + "/v1"

    def start(self) -> FakeUpstream:
        self._server = serve_app(self)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def _next(self, request: RecordedRequest) -> Canned:
        if self.handler is not None:
            answer = self.handler(request)
            if answer is not None:
                return answer
        with self._lock:
            queue = self._queues.get(request.path)
            if queue:
                return queue.pop(0)
        return self._echo(request)

    @staticmethod
    def _echo(request: RecordedRequest) -> Canned:
        if request.path.endswith("/models"):
            return Canned(json={"object": "list", "data": [{"id": "fake-model", "object": "model"}]})
        body = request.json if request.body else {}
        model = body.get("model", "fake-model") if isinstance(body, dict) else "fake-model"
        text = "echo: " + _last_user_text(body)
        if isinstance(body, dict) and body.get("stream"):
            words = text.split(" ")
            pieces = [word + (" " if index < len(words) - 1 else "") for index, word in enumerate(words)]
            events = content_stream(pieces, model=model)
            options = body.get("stream_options")
            if isinstance(options, dict) and options.get("include_usage"):
                events.append(usage_chunk(model=model))  # as OpenAI does when asked
            return Canned(sse=events)
        return Canned(json=chat_completion(text, model=model))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}
        request = RecordedRequest(scope["method"], scope["path"], headers, body)
        with self._lock:
            self.requests.append(request)
        answer = self._next(request)
        if answer.stall:
            await asyncio.sleep(answer.stall)
        if answer.sse is not None or answer.chunks is not None:
            await self._stream(answer, request, receive, send)
            return
        payload = answer.body if answer.body is not None else orjson.dumps({} if answer.json is None else answer.json)
        response_headers = {"content-type": "application/json", **answer.headers}
        await send({"type": "http.response.start", "status": answer.status,
                    "headers": [(k.encode(), v.encode()) for k, v in response_headers.items()]})
        await send({"type": "http.response.body", "body": payload})

    async def _stream(self, answer: Canned, request: RecordedRequest, receive: Receive, send: Send) -> None:
        if answer.chunks is not None:
            pieces = list(answer.chunks)
        else:
            pieces = [b"data: " + (e.encode() if isinstance(e, str) else orjson.dumps(e)) + b"\n\n"
                      for e in answer.sse or []]
            if answer.done:
                pieces.append(b"data: [DONE]\n\n")
        record = StreamRecord(path=request.path, planned=len(pieces))
        with self._lock:
            self.stream_log.append(record)
        disconnected = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            disconnected.set()

        watcher = asyncio.ensure_future(watch())
        headers = {"content-type": "text/event-stream", "cache-control": "no-cache", **answer.headers}
        try:
            await send({"type": "http.response.start", "status": answer.status,
                        "headers": [(k.encode(), v.encode()) for k, v in headers.items()]})
            for index, piece in enumerate(pieces):
                if answer.reset_after is not None and index >= answer.reset_after:
                    raise _Reset()
                if index and answer.delay:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(disconnected.wait(), answer.delay)
                if disconnected.is_set():
                    record.client_closed = True
                    return
                await send({"type": "http.response.body", "body": piece, "more_body": True})
                record.sent += 1
            await send({"type": "http.response.body", "body": b""})
            record.finished = True
        finally:
            watcher.cancel()
            if disconnected.is_set():
                record.client_closed = True


class _Reset(Exception):
    """Raised inside the ASGI app so uvicorn drops the connection mid-stream."""


# --- serving apps in threads ---------------------------------------------------------------------


class GoldenFile:
    """Recorded results of a front end's translations: a JSON file of named groups of named
    cases, each case a result (a dict; ``{"error": ...}`` when the case failed).

    A translator tuned for speed must still produce exactly what it produced before, down to the
    order of keys (a canonical body is sent upstream as serialised, an answer as rendered): record
    the results of the old code once (``record``), then compare every run with them
    (``assert_matches``). A difference is a change of behaviour to explain before re-recording.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def groups(self) -> dict[str, dict[str, Any]]:
        return dict(json.loads(self.path.read_text()))

    def assert_matches(self, group: str, results: dict[str, Any]) -> None:
        expected = self.groups()[group]
        actual = json.loads(json.dumps(results))
        assert list(actual) == list(expected)
        for name in expected:
            assert actual[name] == expected[name], name
            assert json.dumps(actual[name]) == json.dumps(expected[name]), f"{name}: key order"

    def assert_outcomes(self, *, succeeded: tuple[str, ...], failed: tuple[str, ...]) -> None:
        """Guard against a recording in which everything failed (or nothing did)."""
        groups = self.groups()
        for group in succeeded:
            assert all("error" not in result for result in groups[group].values()), group
        for group in failed:
            assert all("error" in result for result in groups[group].values()), group

    def record(self, results: dict[str, Any]) -> None:
        self.path.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServedApp:
    """An ASGI app served by uvicorn on 127.0.0.1 in a background thread."""

    def __init__(self, app: Any, port: int | None = None, http: Any = "auto") -> None:
        self.port = port or free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="auto",
                                timeout_graceful_shutdown=2, http=http)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServedApp:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"server on port {self.port} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def serve_app(app: Any, http: Any = "auto") -> ServedApp:
    """Serve ``app`` on a free port (``http``: uvicorn's protocol setting, or a protocol class)."""
    return ServedApp(app, http=http).start()


@contextlib.contextmanager
def run_cli_proxy(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 20
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Start ``python -m hookproxy ARGS --port N``; yield (``http://127.0.0.1:N``, process)."""
    port = free_port()
    full_env = {**os.environ, **(env or {})}
    process = subprocess.Popen(
        [sys.executable, "-m", "hookproxy", *args, "--port", str(port)],
        env=full_env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                output = process.stdout.read() if process.stdout else ""
                raise RuntimeError(f"hookproxy exited with {process.returncode}:\n{output}")
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("hookproxy did not become ready")
            time.sleep(0.05)
        yield url, process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout:
            process.stdout.close()


class RedisServer:
    """A private ``redis-server`` (the Debian package) on a free loopback port; nothing persisted."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: apt-get install -y redis-server")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Kill the server (SIGKILL: as abrupt as a crash); ``start`` brings it back on the same port."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None


def eventually(check: Callable[[], Any], *, within: float = 10.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns a truthy value (state spreading between processes)."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {within:g}s")
        time.sleep(0.02)


async def eventually_async(check: Callable[[], Any], *, within: float = 10.0, what: str = "condition") -> Any:
    """:func:`eventually` for async tests: polls without blocking the event loop."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {within:g}s")
        await asyncio.sleep(0.02)


# --- config and proxy helpers --------------------------------------------------------------------


def write_config(
    directory: Path, config: dict[str, Any] | None = None, instances: dict[str, dict[str, Any]] | None = None
) -> Path:
    """Write ``config.yaml`` and ``backends/backend-instances/<id>.yaml`` files; return the config path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config or {}), encoding="utf-8")
    if instances:
        folder = directory / "backends" / "backend-instances"
        folder.mkdir(parents=True, exist_ok=True)
        for instance_id, body in instances.items():
            (folder / f"{instance_id}.yaml").write_text(yaml.safe_dump(body), encoding="utf-8")
    return path


@dataclass
class RunningProxy:
    """A hookproxy served on loopback: ``url`` is the base (add ``/v1`` for SDKs)."""

    url: str
    app: Any
    served: ServedApp

    @property
    def proxy(self) -> Any:
        return self.app.state.proxy

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)


# --- pytest fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _fake_upstream_server() -> Iterator[FakeUpstream]:
    upstream = FakeUpstream().start()
    yield upstream
    upstream.stop()


@pytest.fixture
def fake_upstream(_fake_upstream_server: FakeUpstream) -> Iterator[FakeUpstream]:
    """A running fake upstream, reset for this test."""
    _fake_upstream_server.reset()
    yield _fake_upstream_server
    _fake_upstream_server.reset()


@pytest.fixture
def make_fake_upstream() -> Iterator[Callable[[], FakeUpstream]]:
    """Start extra fake upstreams (stopped after the test)."""
    started: list[FakeUpstream] = []

    def make() -> FakeUpstream:
        upstream = FakeUpstream().start()
        started.append(upstream)
        return upstream

    yield make
    for upstream in started:
        upstream.stop()


@pytest.fixture(name="write_config")
def write_config_fixture(tmp_path: Path) -> Callable[..., Path]:
    """``write_config(config, instances)`` into this test's tmp_path."""

    def write(config: dict[str, Any] | None = None, instances: dict[str, dict[str, Any]] | None = None) -> Path:
        return write_config(tmp_path / "config", config, instances)

    return write


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server for this test (never a shared one); ``.stop()``/``.start()`` it at will."""
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def make_proxy() -> Iterator[Callable[..., RunningProxy]]:
    """``make_proxy(config_path, cli={...}, pm=None)``: a hookproxy served on loopback."""
    from .factory import build_app

    running: list[RunningProxy] = []

    def make(config_path: Path | None = None, cli: dict[str, Any] | None = None, **kwargs: Any) -> RunningProxy:
        from .server import protocol_class

        app = build_app(config_path, cli or {}, **kwargs)
        served = serve_app(app, http=protocol_class(app.proxy.settings, app.proxy))  # the server users run
        proxy = RunningProxy(url=served.url, app=app, served=served)
        running.append(proxy)
        return proxy

    yield make
    for proxy in running:
        proxy.served.stop()
