"""Front ends: the client protocols the proxy speaks (OpenAI chat, and whatever plugins add).

A front end is registered by a plugin through the ``register_frontends`` hook, exactly like the
core registers its own OpenAI chat-completions front end (``hookproxy.openai_chat``). It only
*translates*; the core does everything else once for every front end: proxy auth and the
brute-force throttle, the body size limit, the loop guard, routing (selectors, chains,
``failover_routes``, ``--default-backend``, ``--force-model``), failover and plugin retries,
stream start checks and guards, client disconnects and graceful shutdown.

The canonical call between front ends and backends is an OpenAI chat-completions body (a dict);
its replies are OpenAI chat-completion JSON or ``chat.completion.chunk`` SSE events. A front end
turns its client's request into that body (:meth:`Frontend.parse`) and the canonical reply back
into its protocol (:meth:`Frontend.render_body`, :meth:`Frontend.render_stream`). A backend that
speaks the front end's protocol natively may skip both translations: it reads the client's own
body from ``call.client.native`` and returns a :class:`~hookproxy.Reply` whose ``protocol`` is the
front end's; the core then relays that reply untouched (the Anthropic connector does this).

Extra endpoints a protocol needs besides its main POST path (Anthropic's ``count_tokens``, a
model list in the protocol's own shape) are :class:`Endpoint` objects served by the core with
the same auth and error shape.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from .errors import ProxyError
from .sse import SSEEvent, encode_comment

if TYPE_CHECKING:
    from .backend import Reply
    from .proxy import Proxy

#: The protocol name of canonical replies (OpenAI chat completions).
OPENAI_CHAT = "openai-chat"


@dataclass
class ClientRequest:
    """One client request as its front end understood it; the core routes ``body`` by ``model``.

    ``body`` is the canonical chat-completions body (``model`` in it is the client's selector;
    the core rewrites it per backend). ``native`` is the client's own body, for backends that
    speak ``protocol`` natively; ``headers`` holds the protocol headers a native backend may
    forward (lower-case names; never the proxy key). ``usage_requested`` says whether the client
    asked for a usage chunk (OpenAI ``stream_options.include_usage``); without it the core never
    sends the client a chunk without choices. ``state`` is the front end's own per-request
    space (a tool-name map, a sequence counter).
    """

    frontend: str
    protocol: str
    model: str
    stream: bool
    body: dict[str, Any]
    native: dict[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    usage_requested: bool = False
    request_id: str = ""
    state: dict[str, Any] = field(default_factory=dict, repr=False)  # a front end's own; may hold secrets


class HTTPRequest:
    """What a front end sees of an incoming HTTP request.

    ``headers`` (lower-case names) and ``query`` are built on first use (``header(name)`` reads
    one without building them), and never hold the proxy key (``authorization``, ``x-api-key``,
    ``x-goog-api-key``, the ``api_key`` parameter).
    ``body`` is the parsed JSON body where the core read one.
    """

    __slots__ = ("scope", "body", "_headers", "_query")

    def __init__(self, scope: Mapping[str, Any], body: dict[str, Any] | None = None) -> None:
        self.scope = scope
        self.body = body
        self._headers: dict[str, str] | None = None
        self._query: dict[str, str] | None = None

    @property
    def method(self) -> str:
        return str(self.scope["method"])

    @property
    def path(self) -> str:
        return str(self.scope["path"])

    def header(self, name: str) -> str | None:
        """One request header by its lower-case name, without building :attr:`headers` (the
        cheaper way for a front end that reads one or two per request)."""
        raw = name.encode("latin-1")
        if raw in _SECRET_HEADERS:
            return None
        for key, value in self.scope.get("headers", ()):
            if key == raw:
                return str(value.decode("latin-1"))
        return None

    @property
    def headers(self) -> Mapping[str, str]:
        if self._headers is None:
            self._headers = {
                name.decode("latin-1"): value.decode("latin-1")
                for name, value in self.scope.get("headers", ())
                if name not in _SECRET_HEADERS
            }
        return self._headers

    @property
    def query(self) -> Mapping[str, str]:
        if self._query is None:
            raw = self.scope.get("query_string", b"").decode("latin-1")
            self._query = {key: value for key, value in parse_qsl(raw, keep_blank_values=True) if key != "api_key"}
        return self._query


_SECRET_HEADERS = frozenset({b"authorization", b"x-api-key", b"x-goog-api-key", b"cookie", b"proxy-authorization"})


@dataclass
class JSONAnswer:
    """The answer of an :class:`Endpoint`: a JSON document (``None``: empty body) and a status;
    or, with ``raw``, those exact bytes as ``content_type`` (a Prometheus text page)."""

    data: Any = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    content_type: str = "application/json"


@dataclass(frozen=True)
class Endpoint:
    """An extra route of a front end, served by the core (auth, errors in the front end's shape).

    ``when`` narrows a shared path, e.g. ``GET /v1/models`` only for requests that carry an
    ``anthropic-version`` header; an endpoint without ``when`` always matches. ``public``
    endpoints skip proxy auth (a connection warm-up ``HEAD /`` that reveals nothing).
    ``json_body`` endpoints get the request body parsed (size-limited like every body).
    ``prefix`` endpoints serve every longer path under ``path`` (``/v1/models/`` and a model
    id, which may hold slashes); the handler reads the rest from ``request.path``. A path that
    an exact endpoint serves never reaches a prefix one.
    """

    method: str
    path: str
    handler: Callable[[HTTPRequest, Proxy], Awaitable[JSONAnswer]]
    when: Callable[[HTTPRequest], bool] | None = None
    public: bool = False
    json_body: bool = False
    prefix: bool = False


class Frontend:
    """A client protocol. Subclass it in a plugin and register an instance in ``register_frontends``.

    The defaults are the OpenAI chat-completions behaviour for errors and stream checks, so a
    front end overrides only what its protocol does differently.
    """

    #: Short name, shown in logs and ``/-/plugins`` (``anthropic``).
    name: str = ""
    #: The wire protocol of this front end's replies; a Reply in it is relayed untouched.
    protocol: str = ""
    #: POST paths served through the proxy pipeline (``/v1/messages``).
    paths: Sequence[str] = ()
    #: Sent every ``keepalive_interval`` while a committed streaming client waits for a retry.
    keepalive: bytes = encode_comment("keepalive")

    def endpoints(self) -> Sequence[Endpoint]:
        """Extra routes (token counting, a protocol-shaped model list, warm-up probes)."""
        return ()

    def parse(self, request: HTTPRequest) -> ClientRequest | Awaitable[ClientRequest]:
        """Turn the client's request into the canonical call; raise ``InvalidRequest`` (400) on
        input the protocol does not allow, naming the field. A front end that must look
        something up first (a stored conversation) may return an awaitable instead; the plain
        return keeps the hot path free of a coroutine."""
        raise NotImplementedError(f"{type(self).__name__} must implement parse()")

    def render_body(self, body: bytes, client: ClientRequest) -> bytes:
        """A canonical ``chat.completion`` JSON body, as this protocol's non-streamed answer."""
        return body

    def render_reply(self, reply: Reply, client: ClientRequest) -> bytes:
        """What the core calls for a non-streamed answer in another protocol: by default
        :meth:`render_body` of its body. Override it to use ``reply.data``, the body the core
        already parsed (when it did), instead of parsing the JSON a second time."""
        return self.render_body(reply.body or b"", client)

    def render_stream(self, chunks: AsyncIterator[bytes], client: ClientRequest) -> AsyncIterator[bytes]:
        """Canonical chunk SSE bytes, as this protocol's event stream. An upstream failure in
        ``chunks`` raises a ``ProxyError``; let it propagate: the core ends the stream with
        :meth:`error_event`."""
        return chunks

    def error_status(self, error: ProxyError) -> int:
        """The HTTP status for ``error`` (a protocol may map some statuses, e.g. 503 to 529)."""
        return error.status

    def error_body(self, error: ProxyError) -> dict[str, Any]:
        """This protocol's error document for ``error`` (default: the OpenAI error body)."""
        return error.body()

    def error_event(self, error: ProxyError, client: ClientRequest | None) -> bytes:
        """The last bytes of a stream that fails after its first byte (default: one OpenAI
        ``data: {"error": ...}`` event)."""
        from .errors import error_event

        return error_event(error)

    def started(self, event: SSEEvent, backend: str, need_output: bool) -> bool:
        """Judge one event at the start of a stream in this protocol (see ``streamcheck``):
        True once output has started (or, without ``need_output``, on any valid event), False to
        keep reading, raise :class:`hookproxy.BadStream` for a failed start."""
        from .streamcheck import openai_started

        return openai_started(event, backend, need_output)


__all__ = [
    "OPENAI_CHAT",
    "ClientRequest",
    "Endpoint",
    "Frontend",
    "HTTPRequest",
    "JSONAnswer",
]
