"""``GET /-/usage``: requests and tokens per proxy key id and model since the proxy started.

Needs a proxy key like every other route. Keys appear only as their ids (``key-`` and 8 hex
digits of the key's SHA-256; ``anonymous`` when auth is off), never as the key. Models are the
upstream models that answered, so the table stays as small as the configured models.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hookproxy import Endpoint, Frontend, HTTPRequest, JSONAnswer, Proxy, hookimpl
from hookproxy.observe import RequestEnded


@dataclass
class Totals:
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass
class UsageTable:
    since: float = field(default_factory=time.time)
    rows: dict[tuple[str, str], Totals] = field(default_factory=dict)

    def add(self, event: RequestEnded) -> None:
        key = (event.key_id or "anonymous", event.model or "-")
        totals = self.rows.get(key)
        if totals is None:
            totals = self.rows[key] = Totals()
        totals.requests += 1
        if event.status >= 400 or event.error:
            totals.errors += 1
        usage = event.usage
        if usage is not None:
            totals.input_tokens += usage.input
            totals.output_tokens += usage.output
            totals.cached_tokens += usage.cached
            totals.reasoning_tokens += usage.reasoning

    def report(self) -> dict[str, object]:
        keys: dict[str, dict[str, object]] = {}
        for (key_id, model), totals in sorted(self.rows.items()):
            keys.setdefault(key_id, {})[model] = dict(totals.__dict__)
        return {"since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.since)), "keys": keys}


def table_for(proxy: Proxy) -> UsageTable:
    table: UsageTable | None = proxy.plugin_state.get("hookproxy.usage")
    if table is None:
        table = proxy.plugin_state["hookproxy.usage"] = UsageTable()
    return table


class UsageReport(Frontend):
    """No protocol of its own: only the ``/-/usage`` endpoint."""

    name = "usage"

    def endpoints(self) -> list[Endpoint]:
        async def report(_request: HTTPRequest, proxy: Proxy) -> JSONAnswer:
            return JSONAnswer(table_for(proxy).report())

        return [Endpoint("GET", "/-/usage", report)]


@hookimpl
def register_frontends(register: Callable[[Frontend], None], proxy: Proxy) -> None:
    table_for(proxy)
    register(UsageReport())


@hookimpl
def request_ended(event: RequestEnded, proxy: Proxy) -> None:
    table_for(proxy).add(event)
