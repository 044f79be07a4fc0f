"""Turning an upstream's error answer into an :class:`~hookproxy.UpstreamError`.

The default reader for OpenAI-style error bodies (``{"error": {"message", "type", ...}}``, or a
plain ``{"error": "..."}``, or any text). Backends of other protocols override
``HTTPBackend.parse_error`` and may reuse :func:`error_from_parts` to keep the same message rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from .errors import UpstreamError
from .retry_after import retry_after_from_headers


def error_from_parts(
    backend_id: str,
    status: int,
    headers: Mapping[str, str],
    raw: bytes,
    *,
    upstream_body: dict[str, Any] | None = None,
    message: str | None = None,
) -> UpstreamError:
    """An UpstreamError with the upstream's status, ``Retry-After`` and first MiB of body.

    With ``upstream_body`` (an OpenAI error object) the client sees the upstream's own error;
    otherwise the message says which backend answered which status.
    """
    text = message or raw[:500].decode("utf-8", "replace").strip() or "no body"
    return UpstreamError(
        text if upstream_body is not None else f"backend {backend_id!r} answered HTTP {status}: {text}",
        status=status,
        upstream_body=upstream_body,
        retry_after=retry_after_from_headers(headers),
        backend=backend_id,
        raw_body=raw,
    )


def openai_error(backend_id: str, status: int, headers: Mapping[str, str], raw: bytes) -> UpstreamError:
    """Read an OpenAI-style error answer (the default ``HTTPBackend.parse_error``)."""
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        body = parsed["error"]
        return error_from_parts(backend_id, status, headers, raw, upstream_body=body,
                                message=str(body.get("message") or "") or None)
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
        return error_from_parts(backend_id, status, headers, raw, message=parsed["error"])
    return error_from_parts(backend_id, status, headers, raw)
