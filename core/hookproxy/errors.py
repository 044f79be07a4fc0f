"""Every error hookproxy raises, and the one place they become OpenAI error bodies.

The tree::

    ProxyError                      500 server_error (base; plugins raise these or subclasses)
    ├── ConfigError                 start-up only: bad flag, YAML, env var (CLI exits 2)
    ├── InvalidRequest              400 invalid_request_error (malformed JSON, schema, bad spec)
    │   ├── UnknownBackend          400, lists the backends that do exist
    │   └── BodyTooLarge            413
    ├── AuthenticationFailed        401 (proxy key, or a backend's credentials need attention)
    ├── PermissionDenied            403 (e.g. a gated backend)
    ├── RateLimited                 429, carries retry_after (seconds) for the Retry-After header
    ├── LoopDetected                508
    └── UpstreamError               the upstream's own status and message
        ├── UpstreamUnreachable     502 (connection refused, reset before a reply)
        ├── UpstreamTimeout         504
        ├── BackendNotUsable        503, refused locally: the backend's health says what to set
        └── ShuttingDown            503 (the proxy is stopping; a stream cut at the grace period)

Plugins raise these; ``app.py`` converts them exactly once (``error_response``), and a stream
that already sent bytes ends with one ``data: {"error": ...}`` event built by ``error_event``.
Messages never carry a secret: callers pass messages that name files and keys, not values.
"""

from __future__ import annotations

from typing import Any

import orjson


class ProxyError(Exception):
    """Base of every error the proxy turns into an HTTP error for a client."""

    status: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        if code is not None:
            self.code = code
        self.param = param
        self.headers: dict[str, str] = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The OpenAI error body: ``{"error": {"message", "type", "param", "code"}}``."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class ConfigError(ProxyError):
    """A start-up problem: the message names the flag, key or file, and the fix."""

    status = 500
    type = "configuration_error"


class InvalidRequest(ProxyError):
    status = 400
    type = "invalid_request_error"


class UnknownBackend(InvalidRequest):
    code = "unknown_backend"


class BodyTooLarge(InvalidRequest):
    status = 413
    code = "request_too_large"


class AuthenticationFailed(ProxyError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(ProxyError):
    status = 403
    type = "permission_error"
    code = "forbidden"


class RateLimited(ProxyError):
    """429; ``retry_after`` (seconds) becomes the ``Retry-After`` header when known."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after
        if retry_after is not None:
            self.headers.setdefault("Retry-After", str(max(0, int(retry_after + 0.999))))


class LoopDetected(ProxyError):
    status = 508
    type = "invalid_request_error"
    code = "loop_detected"


class UpstreamError(ProxyError):
    """The upstream answered with an error status (kept), or could not be used at all.

    ``upstream_body`` is the upstream's error object when it sent an OpenAI-style one, so the
    client sees the upstream's own message and type; ``retry_after`` is parsed from its headers;
    ``raw_body`` keeps the first MiB of the upstream's body for policies that classify it.
    """

    type = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        status: int = 502,
        upstream_body: dict[str, Any] | None = None,
        retry_after: float | None = None,
        backend: str | None = None,
        raw_body: bytes = b"",
        **kwargs: Any,
    ) -> None:
        super().__init__(message, status=status, **kwargs)
        self.upstream_body = upstream_body
        self.raw_body = raw_body
        self.retry_after = retry_after
        self.backend = backend
        if retry_after is not None and status == 429:
            self.headers.setdefault("Retry-After", str(max(0, int(retry_after + 0.999))))

    def body(self) -> dict[str, Any]:
        if self.upstream_body is not None:
            return {"error": self.upstream_body}
        return super().body()


class UpstreamUnreachable(UpstreamError):
    code = "upstream_unreachable"

    def __init__(self, message: str, **kwargs: Any) -> None:
        kwargs.setdefault("status", 502)
        super().__init__(message, **kwargs)


class UpstreamTimeout(UpstreamError):
    code = "upstream_timeout"

    def __init__(self, message: str, **kwargs: Any) -> None:
        kwargs.setdefault("status", 504)
        super().__init__(message, **kwargs)


class BackendNotUsable(UpstreamError):
    """A backend that cannot serve as configured (an empty key, no URL) was not contacted (503).

    It counts as a failed attempt, so a failover chain moves to its next candidate at once.
    """

    code = "backend_not_usable"
    type = "service_unavailable"
    #: Read by the core policy: retrying the same backend cannot help until its config changes.
    fail_over_at_once = True

    def __init__(self, message: str, **kwargs: Any) -> None:
        kwargs.setdefault("status", 503)
        super().__init__(message, **kwargs)


def error_event(error: ProxyError) -> bytes:
    """The single SSE event that ends a stream which already sent bytes to the client."""
    return b"data: " + orjson.dumps(error.body()) + b"\n\n"


class ShuttingDown(UpstreamError):
    """The proxy is stopping: a stream still running when the shutdown grace period ended."""

    code = "shutting_down"
    type = "server_error"

    def __init__(self, message: str, **kwargs: Any) -> None:
        kwargs.setdefault("status", 503)
        super().__init__(message, **kwargs)
