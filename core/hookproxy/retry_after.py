"""``Retry-After`` parsing shared by the core policy and plugins."""

from __future__ import annotations

import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait, from delta-seconds (float allowed) or an HTTP-date; ``None`` if unusable.

    Negative, non-finite or unparsable values count as absent: waiting on them would be a guess.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
        return max(0.0, seconds) if seconds > -1 else None
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        return None
    return seconds


def retry_after_from_headers(headers: Mapping[str, str]) -> float | None:
    """Read ``retry-after-ms`` or ``retry-after`` from case-insensitive headers."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        parsed = parse_retry_after(millis)
        if parsed is not None:
            return parsed / 1000.0
    return parse_retry_after(headers.get("retry-after"))
