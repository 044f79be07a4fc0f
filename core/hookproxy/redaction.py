"""Keep credentials out of what an upstream says: its error messages are shown and logged.

An upstream that rejects a key often quotes it (``invalid key: Bearer sk-...``), and a proxy
that relays the message verbatim hands the backend's key to every client, and writes it to the
log. Every upstream error answer passes :func:`redact_error` where the core builds it
(``Proxy.send_upstream``): the credentials of the request that was just sent (the values of
its authorization and key headers, whatever a ``prepare_request`` hook put there, such as an
OAuth token), the backend's configured key and the proxy's own keys are replaced, and so is
anything shaped like a bearer token or an ``sk-`` key.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import UpstreamError

REDACTED = "[redacted]"
#: Request headers whose values are credentials (matched as substrings of the lower-case name).
_CREDENTIAL_HEADER_PARTS = ("authorization", "key", "token", "secret", "cookie", "signature", "session")
_SHAPES = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{4,}|\bsk-[A-Za-z0-9_-]{6,}")
#: Shorter values are not treated as secrets (they would mangle ordinary words).
_MIN_SECRET = 6


def credential_values(headers: Mapping[str, str]) -> list[str]:
    """The credential values in a request's headers (the token after ``Bearer`` as well)."""
    values: list[str] = []
    for name, value in headers.items():
        lowered = name.lower()
        if any(part in lowered for part in _CREDENTIAL_HEADER_PARTS):
            values.append(value)
            scheme, _, token = value.partition(" ")
            if token and scheme.isalpha():
                values.append(token.strip())
    return values


class Redactor:
    """Replaces a fixed set of secrets, longest first, plus anything shaped like a key."""

    def __init__(self, secrets: Iterable[str | None]) -> None:
        unique = {secret for secret in secrets if secret and len(secret) >= _MIN_SECRET}
        self._secrets = sorted(unique, key=len, reverse=True)

    def text(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return redact_shapes(text)

    def value(self, value: Any) -> Any:
        """``value`` with every string in it redacted (dicts and lists are copied)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {key: self.value(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.value(item) for item in value]
        return value

    def error(self, error: UpstreamError) -> UpstreamError:
        """Redact ``error`` in place (message, upstream body, raw body) and return it."""
        error.message = self.text(error.message)
        error.args = (error.message,)
        if error.upstream_body is not None:
            error.upstream_body = self.value(error.upstream_body)
        if error.raw_body:
            error.raw_body = self.text(error.raw_body.decode("utf-8", "replace")).encode()
        return error


def redact_shapes(text: str) -> str:
    """``text`` without anything shaped like a bearer token or an ``sk-`` key (no known secrets
    needed: for upstream words read where the request's credentials are out of reach)."""
    return _SHAPES.sub(_shape, text)


def _shape(match: re.Match[str]) -> str:
    scheme = match.group(1)
    return f"{scheme} {REDACTED}" if scheme else REDACTED
