"""The objects a backend plugin works with: its configured instance, the call, the reply.

A plugin's ``resolve_backend`` turns a :class:`BackendInstance` (one YAML block or instance
file) into a :class:`Backend`. Most backends speak the OpenAI protocol over HTTP and subclass
:class:`HTTPBackend`, which lets the core do the request (one shared client, the
``prepare_request``, ``on_rate_limit`` and ``stream_response`` hooks, error mapping).
A backend that composes others (``hybrid``) overrides :meth:`Backend.handle` and calls back into
the core through ``proxy.complete``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .errors import BackendNotUsable, ProxyError
from .frontend import OPENAI_CHAT

if TYPE_CHECKING:
    from .errors import UpstreamError
    from .frontend import ClientRequest
    from .observe import Usage
    from .proxy import Proxy
    from .routing import Route
    from .sse import UpstreamStream


@dataclass(frozen=True)
class BackendInstance:
    """One configured backend, as written in YAML (a ``backends:`` block or an instance file).

    ``id`` is the instance id (``openai-compatible.minimax`` for an instance file, the block key
    for a ``backends:`` block); ``extra`` is the plugin's own settings block, validated by the
    plugin; ``source`` names the file it came from so errors can point at it; ``synthesized``
    is true for the default instance the core offers to every connector nobody configured.
    """

    id: str
    connector: str
    api_url: str | None = None
    api_key: str | None = field(default=None, repr=False)  # never in a log line or trace
    models: tuple[str, ...] = ()
    timeout: float | None = None
    #: The most output tokens this backend's model accepts: a larger ``max_tokens`` or
    #: ``max_completion_tokens`` from a client is lowered to it (``None``: sent as asked).
    max_output_tokens: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)  # may hold secrets
    source: Path | None = None
    synthesized: bool = False
    #: The environment variable(s) ``api_key`` was read from (``${MINIMAX_API_KEY:-}``), so a
    #: missing key can be reported as "set MINIMAX_API_KEY".
    api_key_env: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The part after ``<connector>.``, or the whole id for a ``backends:`` block."""
        prefix = self.connector + "."
        return self.id[len(prefix) :] if self.id.startswith(prefix) else self.id

    def where(self) -> str:
        """``backend 'x' (file.yaml)``: how error messages name this instance."""
        return f"backend {self.id!r}" + (f" ({self.source})" if self.source else "")


@dataclass(frozen=True)
class Health:
    """Whether a backend can serve now, and if not, why (shown in /health and ``plugins``).

    ``details`` must never contain a secret.
    """

    usable: bool
    reason: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class ChatCall:
    """One canonical (OpenAI chat-completions) call as a backend sees it.

    ``body`` is the canonical body with ``model`` already rewritten to the upstream model and
    the URI parameters applied; backends may change their copy. ``attempt`` counts attempts on
    this backend for this call, starting at 1. ``client`` is the client's request as its front
    end parsed it (``None`` for calls a plugin makes through ``proxy.complete``): a backend that
    speaks ``client.protocol`` natively may send ``client.native`` instead of ``body``.
    """

    body: dict[str, Any]
    route: Route
    stream: bool
    attempt: int = 1
    request_id: str = ""
    client: ClientRequest | None = None
    #: Free space for plugins to keep per-call state between hooks (keyed by plugin name). It may
    #: hold credentials (an OAuth token), so it is never in a repr: hook tracing prints reprs.
    state: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass
class Reply:
    """A successful upstream answer, before it is sent to the client.

    Exactly one of ``body`` (non-streaming, raw bytes) and ``chunks`` (streaming, SSE bytes) is
    set. ``close`` releases the upstream connection; the core calls it when the client is done or
    gone, and it must be safe to call twice. ``protocol`` is the wire protocol of ``body`` and
    ``chunks``: canonical OpenAI chat completions unless a backend answered a front end in its
    own protocol (then the front end relays it untouched).
    """

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    chunks: AsyncIterator[bytes] | None = None
    close: Callable[[], Awaitable[None]] | None = None
    backend: str = ""
    model: str = ""
    protocol: str = OPENAI_CHAT
    #: The upstream's token usage when the core already read it (non-streamed HTTP answers).
    usage: Usage | None = None
    #: ``body`` as parsed JSON when the core already parsed it (non-streamed HTTP answers that no
    #: ``transform_body`` changed), so a front end that translates it need not parse it again.
    #: Read-only: it is the same object the core read the usage from.
    data: Any = None

    async def aclose(self) -> None:
        if self.close is not None:
            close, self.close = self.close, None
            await close()


@dataclass
class UpstreamRequest:
    """The HTTP request the core is about to send; ``prepare_request`` hooks edit it in place."""

    method: str
    url: str
    headers: dict[str, str] = field(repr=False)  # carries credentials: never in a log line or trace
    json: dict[str, Any] = field(repr=False)
    timeout: float = 120.0

    def __repr__(self) -> str:
        return f"UpstreamRequest({self.method} {self.url}, headers={sorted(self.headers)})"


@dataclass(frozen=True)
class RetryDecision:
    """What to do after an upstream attempt failed (returned by ``on_rate_limit``).

    ``retry``: wait ``wait`` seconds, then try the same backend again; ``failover``: wait, then
    move to the next candidate; ``surface``: give the client this error now.
    """

    action: Literal["retry", "failover", "surface"]
    wait: float = 0.0
    reason: str = ""


class Backend:
    """A resolved backend instance. Subclass it in a plugin.

    The defaults serve the instance's configured models and are always usable; override
    :meth:`health` to report missing credentials and the like.
    """

    #: Whether this backend can serve with no instance configured at all (the hybrid, which only
    #: composes other backends, can). Only then does the core keep the ``<connector>.default``
    #: instance it offers to every installed connector nobody configured; a backend that needs an
    #: ``api_url`` or a key leaves this false, so an installed plugin never adds a backend by itself.
    serves_unconfigured: bool = False

    def __init__(self, instance: BackendInstance) -> None:
        self.instance = instance

    @property
    def id(self) -> str:
        return self.instance.id

    def models(self) -> Sequence[str]:
        """Models listed in ``/v1/models`` (as ``<backend>:<model>``)."""
        return self.instance.models

    def health(self) -> Health:
        return Health(usable=True)

    def refusal(self) -> ProxyError | None:
        """The error to answer instead of contacting this backend, or ``None`` to go ahead.

        The core asks before every attempt. The default refuses nothing: a backend that is not
        usable refuses in its own ``handle`` or hook, with its own status.
        """
        return None

    async def handle(self, call: ChatCall, proxy: Proxy) -> Reply:
        """Serve one call; raise a :class:`~hookproxy.errors.ProxyError` on failure."""
        raise NotImplementedError(f"{type(self).__name__} must implement handle()")

    async def aclose(self) -> None:
        """Release what the backend holds; called once at shutdown."""


class HTTPBackend(Backend):
    """A backend reached over HTTP; by default one that speaks OpenAI chat completions.

    The core runs one pipeline for every HTTP backend (``Proxy.send_upstream``): it builds the
    request from the steps below plus the loop-guard header, runs every ``prepare_request``
    hook, sends it on the shared client with the backend's timeout, maps an error status through
    :meth:`parse_error` (then ``on_rate_limit`` and failover decide), guards a stream (idle and
    lifetime limits, the start check) and hands a success through :meth:`transform_body` or
    :meth:`transform_stream` and the ``stream_response`` hook. An OpenAI-compatible backend
    overrides nothing but perhaps :meth:`base_url`, :meth:`api_key` or :meth:`health`; a backend
    of another protocol (Anthropic Messages) overrides the request and reply steps and keeps
    timeouts, the stream guard, failover and every hook without copying core code.
    """

    def base_url(self) -> str:
        return (self.instance.api_url or "").rstrip("/")

    def api_key(self) -> str | None:
        return self.instance.api_key or None

    def timeout(self) -> float | None:
        """Seconds for the upstream call; ``None`` means the proxy-wide ``--timeout``."""
        return self.instance.timeout

    def health(self) -> Health:
        if not self.base_url():
            return Health(False, f"no api_url configured for {self.instance.where()}")
        return Health(True)

    def refusal(self) -> ProxyError | None:
        """A backend whose :meth:`health` says it is not usable is refused locally (503).

        Sending it the request could only fail, later and less clearly (a keyless request to a
        public API comes back as 401, or as a DNS error); the refusal names what to set, and
        failover moves on to the next candidate at once.
        """
        state = self.health()
        if state.usable:
            return None
        return BackendNotUsable(f"backend {self.id!r} is not usable: {state.reason}", backend=self.id)

    # --- the request ---------------------------------------------------------------------

    def request_path(self, call: ChatCall) -> str:
        """Appended to :meth:`base_url` (``/chat/completions``)."""
        return "/chat/completions"

    def request_headers(self, call: ChatCall) -> dict[str, str]:
        """Headers beside content type, accept and the loop guard: the credentials."""
        key = self.api_key()
        return {"authorization": f"Bearer {key}"} if key else {}

    def request_body(self, call: ChatCall) -> dict[str, Any]:
        """The JSON body to send (``prepare_request`` hooks may still edit it)."""
        return call.body

    # --- the answer --------------------------------------------------------------------------

    def reply_protocol(self, call: ChatCall) -> str:
        """The protocol the upstream answers in once :meth:`transform_body` / :meth:`transform_stream`
        ran; the canonical one unless the backend relays a front end's own protocol."""
        return OPENAI_CHAT

    def parse_error(self, status: int, headers: Mapping[str, str], raw: bytes) -> UpstreamError:
        """An error answer (status >= 400) as an :class:`~hookproxy.UpstreamError`, keeping the
        upstream's status, message and ``Retry-After``. The default reads OpenAI error bodies."""
        from .upstream_errors import openai_error

        return openai_error(self.id, status, headers, raw)

    def transform_body(self, call: ChatCall, body: bytes) -> bytes:
        """A non-streamed success body, as ``reply_protocol`` JSON (default: unchanged)."""
        return body

    def transform_stream(self, call: ChatCall, stream: UpstreamStream) -> AsyncIterator[bytes] | None:
        """A streamed success, as ``reply_protocol`` SSE bytes; ``None`` relays it untouched."""
        return None

    async def handle(self, call: ChatCall, proxy: Proxy) -> Reply:
        return await proxy.send_upstream(self, call)
