"""``GET /metrics``: Prometheus metrics from the observer hooks, with bounded label sets.

On by default (``observability.metrics`` / ``--no-metrics``); served with the proxy key like
every route, so a scraper sends it as a bearer token. Labels never carry a key, a request id or
a client-chosen string: ``model`` is one of the backend's configured models or ``other``, and
status codes are classes (``2xx``). Per-key usage lives in ``/-/usage`` instead.

Names follow the OpenTelemetry GenAI conventions where one fits (``gen_ai_`` prefix, the
``gen_ai.token.type`` values ``input``/``output``), with ``hookproxy_`` for what is the proxy's
own. One difference: tokens are a counter (``hookproxy_tokens_total``), not the GenAI
``gen_ai.client.token.usage`` histogram, because operators sum tokens per backend and model and a
counter answers that directly and cheaply.

With ``--workers N`` the page reports the whole server, not the worker that happened to answer:
the supervisor points ``PROMETHEUS_MULTIPROC_DIR`` at a private folder before the workers start,
prometheus-client then keeps every worker's values in files there, and the page sums them
(``MultiProcessCollector``). In-flight requests are then each worker's count as of its last
finished request, summed over the live workers.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from hookproxy import Endpoint, Frontend, HTTPRequest, JSONAnswer, Proxy, hookimpl
from hookproxy.observe import AttemptEnded, RequestEnded

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Set (by the supervisor of ``--workers``) when several processes share one metrics page.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_OVERHEAD = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)


class ProxyMetrics:
    """The metric families of one proxy, and cached label children (a ``labels()`` call costs
    more than the increment it precedes)."""

    def __init__(self, proxy: Proxy) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.requests = Counter("hookproxy_requests", "Client requests by front end, backend, model and status "
                                "class", ["frontend", "backend", "model", "status_class"], registry=registry)
        self.duration = Histogram("hookproxy_request_duration_seconds", "Client request duration, to the last byte",
                                  ["frontend", "backend"], buckets=_LATENCY, registry=registry)
        self.overhead = Histogram("hookproxy_proxy_overhead_seconds", "Time spent in the proxy per request, upstream "
                                  "time and retry waits excluded", ["frontend"], buckets=_OVERHEAD, registry=registry)
        self.first_token = Histogram("gen_ai_server_time_to_first_token_seconds", "Streams: time until the first "
                                     "byte of the answer reached the client", ["backend", "model"], buckets=_LATENCY,
                                     registry=registry)
        self.tokens = Counter("hookproxy_tokens", "Tokens reported by upstreams, by gen_ai.token.type "
                              "(input, output, cached, reasoning)", ["backend", "model", "type"], registry=registry)
        self.errors = Counter("hookproxy_upstream_errors", "Failed upstream attempts by kind (http, timeout, "
                              "unreachable, bad_stream, refused)", ["backend", "kind"], registry=registry)
        self.failovers = Counter("hookproxy_failovers", "Requests moved away from a backend after a failure",
                                 ["backend"], registry=registry)
        self.shared = bool(os.environ.get(MULTIPROC_ENV))
        in_flight = Gauge("hookproxy_requests_in_flight", "Client requests being served", registry=registry,
                          multiprocess_mode="livesum")
        if self.shared:
            self.in_flight: Gauge | None = in_flight  # set as each request ends (one file per worker)
        else:
            self.in_flight = None
            in_flight.set_function(lambda: proxy.observers.in_flight)
        registry.register(BackendStates(proxy))
        self._proxy = weakref.ref(proxy)
        self._models: dict[str, frozenset[str]] = {}  # read on first use: models() may touch files
        self._children: dict[tuple[Any, ...], Any] = {}

    def child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def model_label(self, backend: str, model: str) -> str:
        models = self._models.get(backend)
        if models is None:
            proxy = self._proxy()
            found = proxy.backends.get(backend) if proxy is not None else None
            models = self._models[backend] = frozenset(found.models()) if found is not None else frozenset()
        return model if model in models else "other"

    def observe_request(self, event: RequestEnded) -> None:
        if self.in_flight is not None:
            proxy = self._proxy()
            self.in_flight.set(proxy.observers.in_flight if proxy is not None else 0)
        backend = event.backend or "none"
        model = self.model_label(event.backend, event.model) if event.backend else "none"
        # A stream that failed after its first byte was sent with 200: count it apart.
        status_class = "error" if event.error and event.status < 400 else f"{event.status // 100}xx"
        self.child(self.requests, event.frontend, backend, model, status_class).inc()
        self.child(self.duration, event.frontend, backend).observe(event.duration)
        self.child(self.overhead, event.frontend).observe(event.overhead)
        if event.stream and event.ttfb is not None and event.backend:
            self.child(self.first_token, backend, model).observe(event.ttfb)
        usage = event.usage
        if usage is not None and event.backend:
            for kind, count in (("input", usage.input), ("output", usage.output), ("cached", usage.cached),
                                ("reasoning", usage.reasoning)):
                if count:
                    self.child(self.tokens, backend, model, kind).inc(count)

    def observe_attempt(self, event: AttemptEnded) -> None:
        if event.error is not None:
            self.child(self.errors, event.backend, event.error).inc()
        if event.decision == "failover":
            self.child(self.failovers, event.backend).inc()


class BackendStates(Collector):
    """``hookproxy_backend_usable``: 1 for a backend that can serve now, read at scrape time."""

    def __init__(self, proxy: Proxy) -> None:
        self._proxy = weakref.ref(proxy)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """Names only: registering must not ask backends for their health (it may read files)."""
        yield GaugeMetricFamily("hookproxy_backend_usable", "1 when the backend can serve now", labels=["backend"])

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("hookproxy_backend_usable", "1 when the backend can serve now", labels=["backend"])
        proxy = self._proxy()
        if proxy is not None:
            for backend_id, backend in proxy.backends.items():
                family.add_metric([backend_id], 1.0 if backend.health().usable else 0.0)
        yield family


_metrics: weakref.WeakKeyDictionary[Proxy, ProxyMetrics] = weakref.WeakKeyDictionary()


class MetricsPage(Frontend):
    """No protocol of its own: only the ``/metrics`` endpoint."""

    name = "metrics"

    def endpoints(self) -> list[Endpoint]:
        async def page(_request: HTTPRequest, proxy: Proxy) -> JSONAnswer:
            metrics = _metrics[proxy]
            registry = metrics.registry
            if metrics.shared:  # every worker's values, read from the shared folder
                registry = CollectorRegistry()
                MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
                registry.register(BackendStates(proxy))
            return JSONAnswer(raw=generate_latest(registry), content_type=CONTENT_TYPE)

        return [Endpoint("GET", "/metrics", page)]


@hookimpl
def register_frontends(register: Callable[[Frontend], None], proxy: Proxy) -> None:
    if proxy.settings.metrics:
        _metrics[proxy] = ProxyMetrics(proxy)
        register(MetricsPage())


@hookimpl
def request_ended(event: RequestEnded, proxy: Proxy) -> None:
    metrics = _metrics.get(proxy)
    if metrics is not None:
        metrics.observe_request(event)


@hookimpl
def attempt_ended(event: AttemptEnded, proxy: Proxy) -> None:
    metrics = _metrics.get(proxy)
    if metrics is not None:
        metrics.observe_attempt(event)
