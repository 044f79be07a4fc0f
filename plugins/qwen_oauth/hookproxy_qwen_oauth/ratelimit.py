"""The initial rate-limit retry: which errors it holds, how long, and the shared backoff.

Why: the Qwen service answered bursts with short 429s (and "quota" bodies that cleared within a
minute), so the first one is held and retried once instead of failing the user's agent. The
wait is recorded connector-wide so the other in-flight requests do not run into the same window.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any

import orjson

from hookproxy import Table, UpstreamError

from .settings import QwenOAuthExtra

log = logging.getLogger("hookproxy.qwen_oauth")

_QUOTA_CODES = ("insufficient_quota", "quota_exceeded")
#: The shared-state table of connector-wide backoffs, keyed by instance id.
BACKOFF_TABLE = "qwen-oauth-backoff"


def _quota_in(obj: Any) -> bool:
    if not isinstance(obj, dict):
        return False
    if any(obj.get(key) in _QUOTA_CODES for key in ("code", "type")):
        return True
    message = str(obj.get("message") or "").lower()
    return (
        "exceeded your current quota" in message
        or "token-limit" in message
        or ("quota" in message and "exceeded" in message)
    )


def is_quota(error: UpstreamError) -> bool:
    """The body (or its nested ``error``) says quota exhaustion."""
    if _quota_in(error.upstream_body):
        return True
    raw = error.raw_body or b""
    try:
        parsed = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict) and (_quota_in(parsed) or _quota_in(parsed.get("error"))):
        return True
    text = raw[:65536].decode("utf-8", "replace").lower()
    return "insufficient_quota" in text or "exceeded your current quota" in text


def is_recoverable(error: UpstreamError) -> bool:
    """Any 429, and a 503 whose body is the (often spurious) quota case."""
    return error.status == 429 or (error.status == 503 and is_quota(error))


#: Message fragments the official client reads as "the token was rejected".
AUTH_PHRASES = ("unauthorized", "forbidden", "invalid api key", "invalid access token", "token expired",
                "authentication", "access denied")


def is_auth_error(error: UpstreamError) -> bool:
    """An auth error as the official client sees it: 401/403, or a message naming a rejected token.

    A quota answer is not one.
    """
    if is_quota(error):
        return False
    if error.status in (401, 403):
        return True
    message = error.message.lower()
    return any(phrase in message for phrase in AUTH_PHRASES) or ("token" in message and "expired" in message)


def retry_wait(
    error: UpstreamError, extra: QwenOAuthExtra, uniform: Callable[[float, float], float] | None = None
) -> tuple[float, str]:
    """Seconds to hold the request: Retry-After capped, else one random draw, capped."""
    cap = extra.qwen_oauth_initial_rate_limit_retry_max_wait_seconds
    if error.retry_after is not None:
        return min(error.retry_after, cap), f"Retry-After {error.retry_after:g}s"
    low = extra.qwen_oauth_initial_rate_limit_retry_random_min_seconds
    high = extra.qwen_oauth_initial_rate_limit_retry_random_max_seconds
    if low > high:
        low, high = high, low
    draw = uniform or random.uniform  # looked up per call so tests can patch random.uniform
    return min(draw(low, high), cap), "random delay"


class Backoff:
    """A connector-wide "do not send before" deadline, shared by every worker and host.

    It lives in the proxy's shared state: reading it is a local lookup; recording it (an error
    path, from the synchronous ``on_rate_limit`` hook) applies at once here and is written to
    the other processes in the background.
    """

    def __init__(self, table: Table, key: str) -> None:
        self._table = table
        self._key = key

    def record(self, wait: float) -> None:
        if wait > self.remaining():
            self._table.set_soon(self._key, round(wait, 3), ttl=wait)
        log.debug("Qwen OAuth connector-wide rate-limit backoff recorded: wait=%.2fs", wait)

    def remaining(self) -> float:
        return self._table.seconds_left(self._key) if self._table else 0.0
