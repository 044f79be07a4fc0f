"""One access-log line per client request, on the ``hookproxy.access`` logger.

``access_log: text`` (or ``--access-log text``) writes ``key=value`` pairs, ``json`` one JSON
object per line; ``off`` (the default) writes nothing. The fields are those of
:class:`~hookproxy.observe.RequestEnded`; the proxy key appears only as its id.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from hookproxy import Proxy, hookimpl
from hookproxy.observe import RequestEnded

log = logging.getLogger("hookproxy.access")


def fields(event: RequestEnded) -> dict[str, Any]:
    usage = event.usage
    return {
        "request_id": event.request_id,
        "key_id": event.key_id,
        "frontend": event.frontend,
        "path": event.path,
        "status": event.status,
        "backend": event.backend or None,
        "model": event.model or None,
        "stream": event.stream,
        "ttfb_ms": None if event.ttfb is None else round(event.ttfb * 1000, 2),
        "duration_ms": round(event.duration * 1000, 2),
        "overhead_ms": round(event.overhead * 1000, 2),
        "tokens_in": usage.input if usage else None,
        "tokens_out": usage.output if usage else None,
        "tokens_cached": usage.cached if usage else None,
        "tokens_reasoning": usage.reasoning if usage else None,
        "attempts": event.attempts,
        "failovers": event.failovers,
        "error": event.error,
    }


@hookimpl
def request_ended(event: RequestEnded, proxy: Proxy) -> None:
    style = proxy.settings.access_log
    if style == "off" or not log.isEnabledFor(logging.INFO):
        return
    values = fields(event)
    if style == "json":
        log.info("%s", orjson.dumps(values).decode())
    else:
        log.info("%s", " ".join(f"{key}={'-' if value is None else value}" for key, value in values.items()))
