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
(``MultiProcessCollector``). Each worker writes its in-flight count at each request's end and
every second, and the page sums those of the live workers.

Updates cost no lock: one process (the usual case) keeps its counts and histogram buckets in
plain dictionaries (:class:`LocalTally`), touched only by the event loop's thread, and builds the
page from them at scrape time. prometheus-client's metric objects take a lock on every update,
about 5 µs per request in the bench. Only with ``--workers`` are they used (:class:`SharedTally`),
because their multiprocess mode is what lets any worker report the whole server at once.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from hookproxy import Endpoint, Frontend, HTTPRequest, JSONAnswer, Proxy, hookimpl
from hookproxy.observe import AttemptEnded, RequestEnded, Usage

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Set (by the supervisor of ``--workers``) when several processes share one metrics page.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_OVERHEAD = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)


@dataclass(frozen=True, eq=False)
class Spec:
    """One metric family: a counter, or a histogram when it has ``buckets``."""

    name: str
    doc: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()


REQUESTS = Spec("hookproxy_requests", "Client requests by front end, backend, model and status class",
                ("frontend", "backend", "model", "status_class"))
DURATION = Spec("hookproxy_request_duration_seconds", "Client request duration, to the last byte",
                ("frontend", "backend"), _LATENCY)
OVERHEAD = Spec("hookproxy_proxy_overhead_seconds", "Time spent in the proxy per request, upstream time and "
                "retry waits excluded", ("frontend",), _OVERHEAD)
FIRST_TOKEN = Spec("gen_ai_server_time_to_first_token_seconds", "Streams: time until the first byte of the "
                   "answer reached the client", ("backend", "model"), _LATENCY)
TOKENS = Spec("hookproxy_tokens", "Tokens reported by upstreams, by gen_ai.token.type (input, output, cached, "
              "reasoning)", ("backend", "model", "type"))
ERRORS = Spec("hookproxy_upstream_errors", "Failed upstream attempts by kind (http, timeout, unreachable, "
              "bad_stream, refused)", ("backend", "kind"))
FAILOVERS = Spec("hookproxy_failovers", "Requests moved away from a backend after a failure", ("backend",))
SPECS = (REQUESTS, DURATION, OVERHEAD, FIRST_TOKEN, TOKENS, ERRORS, FAILOVERS)
IN_FLIGHT = ("hookproxy_requests_in_flight", "Client requests being served")
#: With ``--workers``: the longest a worker's in-flight count on the page is out of date.
IN_FLIGHT_PERIOD = 1.0


class LocalTally(Collector):
    """This process's counts and histogram buckets in plain lists, turned into metric families
    when the page is scraped (the scrape runs on the event loop too, so it always sees whole
    updates). Each label set owns one list: ``[count]`` for a counter; a count per bucket (the
    last one is +Inf), then the sum, for a histogram. A caller may keep a list from :meth:`cell`
    and update it in place, which is how :class:`ProxyMetrics` counts a request."""

    def __init__(self, proxy: Proxy) -> None:
        self._proxy = weakref.ref(proxy)
        self._counts: dict[tuple[Spec, tuple[str, ...]], list[float]] = {}
        self._cells: dict[tuple[Spec, tuple[str, ...]], list[float]] = {}

    def cell(self, spec: Spec, labels: tuple[str, ...]) -> list[float]:
        """The list holding ``spec``'s value for ``labels`` (created at zero)."""
        store = self._cells if spec.buckets else self._counts
        cell = store.get((spec, labels))
        if cell is None:
            cell = store[(spec, labels)] = [0.0] * (len(spec.buckets) + 2) if spec.buckets else [0.0]
        return cell

    def count(self, spec: Spec, labels: tuple[str, ...], amount: float = 1.0) -> None:
        self.cell(spec, labels)[0] += amount

    def observe(self, spec: Spec, labels: tuple[str, ...], value: float) -> None:
        cells = self.cell(spec, labels)
        cells[bisect_left(spec.buckets, value)] += 1  # buckets are "less or equal" bounds
        cells[-1] += value

    def request_ended(self) -> None:
        """Nothing to do: the in-flight gauge is read from the proxy at scrape time."""

    def describe(self) -> Iterator[Metric]:
        """Names only: registering must not build the page."""
        for spec in SPECS:
            yield _family(spec)
        yield GaugeMetricFamily(*IN_FLIGHT)

    def collect(self) -> Iterator[Metric]:
        counters = {spec: CounterMetricFamily(spec.name, spec.doc, labels=spec.labels)
                    for spec in SPECS if not spec.buckets}
        histograms = {spec: HistogramMetricFamily(spec.name, spec.doc, labels=spec.labels)
                      for spec in SPECS if spec.buckets}
        for (spec, labels), (value,) in self._counts.items():
            counters[spec].add_metric(labels, value)
        for (spec, labels), cells in self._cells.items():
            running = 0.0
            buckets = []
            for bound, count in zip(_bucket_labels(spec), cells[:-1], strict=True):
                running += count
                buckets.append((bound, running))
            histograms[spec].add_metric(labels, buckets, cells[-1])
        for spec in SPECS:
            yield counters[spec] if spec in counters else histograms[spec]
        proxy = self._proxy()
        yield GaugeMetricFamily(*IN_FLIGHT, value=proxy.observers.in_flight if proxy is not None else 0)


def _bucket_labels(spec: Spec) -> list[str]:
    """The ``le`` label of each bucket, +Inf last, written as prometheus-client writes them."""
    return [floatToGoString(bound) for bound in (*spec.buckets, float("inf"))]  # type: ignore[no-untyped-call]


def _family(spec: Spec) -> CounterMetricFamily | HistogramMetricFamily:
    if spec.buckets:
        return HistogramMetricFamily(spec.name, spec.doc, labels=spec.labels)
    return CounterMetricFamily(spec.name, spec.doc, labels=spec.labels)


class SharedTally:
    """prometheus-client's metric objects in multiprocess mode (``--workers``): each worker writes
    its values to files in the shared folder, so any worker's page sums the whole server."""

    def __init__(self, proxy: Proxy, registry: CollectorRegistry) -> None:
        self._proxy = weakref.ref(proxy)
        self._metrics: dict[Spec, Any] = {
            spec: (Histogram(spec.name, spec.doc, spec.labels, buckets=spec.buckets, registry=registry)
                   if spec.buckets else Counter(spec.name, spec.doc, spec.labels, registry=registry))
            for spec in SPECS}
        self._in_flight = Gauge(*IN_FLIGHT, registry=registry, multiprocess_mode="livesum")
        self._children: dict[tuple[Spec, tuple[str, ...]], Any] = {}  # labels() costs more than inc()
        self._refresh: asyncio.TimerHandle | None = None

    def _child(self, spec: Spec, labels: tuple[str, ...]) -> Any:
        child = self._children.get((spec, labels))
        if child is None:
            child = self._children[(spec, labels)] = self._metrics[spec].labels(*labels)
        return child

    def count(self, spec: Spec, labels: tuple[str, ...], amount: float = 1.0) -> None:
        self._child(spec, labels).inc(amount)

    def observe(self, spec: Spec, labels: tuple[str, ...], value: float) -> None:
        self._child(spec, labels).observe(value)

    def request_ended(self) -> None:
        """Write this worker's in-flight count (one file per worker; the page sums the live ones)."""
        proxy = self._proxy()
        self._in_flight.set(proxy.observers.in_flight if proxy is not None else 0)
        self.keep_in_flight_fresh()

    def keep_in_flight_fresh(self) -> None:
        """From this worker's first request on, write its in-flight count every
        ``IN_FLIGHT_PERIOD`` seconds too: long streams end no request for minutes, and the page
        would show the count as of the last one that ended."""
        if self._refresh is None:
            self._refresh = asyncio.get_running_loop().call_later(IN_FLIGHT_PERIOD, self._refreshed)

    def _refreshed(self) -> None:
        self._refresh = None
        if self._proxy() is not None:
            self.request_ended()


#: Kinds of request (front end, backend, model, status) whose cells are remembered.
_ROWS_KEPT = 4096
_TOKEN_KINDS = ("input", "output", "cached", "reasoning")


def _status_class(event: RequestEnded) -> str:
    """``2xx`` and so on; a stream that failed after its first byte was sent with 200 is ``error``."""
    return "error" if event.error and event.status < 400 else f"{event.status // 100}xx"


@dataclass(slots=True)
class _Row:
    """The cells one kind of request updates (see :meth:`ProxyMetrics.observe_request`). The
    time-to-first-token and token cells are made on first use: a series appears on the page only
    once it has a value, as with the general path."""

    tally: LocalTally
    backend: str
    model: str
    requests: list[float]
    duration: list[float]
    overhead: list[float]
    first_token: list[float] | None = None
    tokens: list[list[float] | None] = field(default_factory=lambda: [None] * len(_TOKEN_KINDS))

    def add_first_token(self, seconds: float) -> None:
        cells = self.first_token
        if cells is None:
            cells = self.first_token = self.tally.cell(FIRST_TOKEN, (self.backend, self.model))
        cells[bisect_left(_LATENCY, seconds)] += 1
        cells[-1] += seconds

    def add_tokens(self, usage: Usage) -> None:
        cells = self.tokens
        for index, count in enumerate((usage.input, usage.output, usage.cached, usage.reasoning)):
            if count:
                cell = cells[index]
                if cell is None:
                    cell = cells[index] = self.tally.cell(TOKENS, (self.backend, self.model, _TOKEN_KINDS[index]))
                cell[0] += count


class ProxyMetrics:
    """Turns observer events into metric updates with bounded label sets."""

    def __init__(self, proxy: Proxy) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.shared = bool(os.environ.get(MULTIPROC_ENV))
        self.tally: LocalTally | SharedTally
        if self.shared:
            self.tally = SharedTally(proxy, self.registry)
        else:
            self.tally = LocalTally(proxy)
            self.registry.register(self.tally)
        self.registry.register(BackendStates(proxy))
        self._proxy = weakref.ref(proxy)
        self._models: dict[str, frozenset[str]] = {}  # read on first use: models() may touch files
        self._rows: dict[tuple[str, str, str, int, bool], _Row] = {}

    def model_label(self, backend: str, model: str) -> str:
        models = self._models.get(backend)
        if models is None:
            proxy = self._proxy()
            found = proxy.backends.get(backend) if proxy is not None else None
            models = self._models[backend] = frozenset(found.models()) if found is not None else frozenset()
        return model if model in models else "other"

    def observe_request(self, event: RequestEnded) -> None:
        tally = self.tally
        if isinstance(tally, LocalTally):
            self._observe_locally(tally, event)
            return
        tally.request_ended()
        backend = event.backend or "none"
        model = self.model_label(event.backend, event.model) if event.backend else "none"
        tally.count(REQUESTS, (event.frontend, backend, model, _status_class(event)))
        tally.observe(DURATION, (event.frontend, backend), event.duration)
        tally.observe(OVERHEAD, (event.frontend,), event.overhead)
        if event.stream and event.ttfb is not None and event.backend:
            tally.observe(FIRST_TOKEN, (backend, model), event.ttfb)
        usage = event.usage
        if usage is not None and event.backend:
            for kind, count in (("input", usage.input), ("output", usage.output), ("cached", usage.cached),
                                ("reasoning", usage.reasoning)):
                if count:
                    tally.count(TOKENS, (backend, model, kind), count)

    def _observe_locally(self, tally: LocalTally, event: RequestEnded) -> None:
        """The same updates as the shared path, through the cells of the request's kind, found
        with one lookup (this runs once per request; the general path costs several)."""
        key = (event.frontend, event.backend, event.model, event.status, bool(event.error))
        row = self._rows.get(key)
        if row is None:
            if len(self._rows) >= _ROWS_KEPT:  # models are client-chosen strings: keep the map bounded
                self._rows.clear()
            row = self._rows[key] = self._row(tally, event)
        row.requests[0] += 1
        duration, overhead = event.duration, event.overhead
        cells = row.duration
        cells[bisect_left(_LATENCY, duration)] += 1
        cells[-1] += duration
        cells = row.overhead
        cells[bisect_left(_OVERHEAD, overhead)] += 1
        cells[-1] += overhead
        if event.stream and event.ttfb is not None and event.backend:
            row.add_first_token(event.ttfb)
        if event.usage is not None and event.backend:
            row.add_tokens(event.usage)

    def _row(self, tally: LocalTally, event: RequestEnded) -> _Row:
        backend = event.backend or "none"
        model = self.model_label(event.backend, event.model) if event.backend else "none"
        return _Row(tally, backend, model,
                    tally.cell(REQUESTS, (event.frontend, backend, model, _status_class(event))),
                    tally.cell(DURATION, (event.frontend, backend)), tally.cell(OVERHEAD, (event.frontend,)))

    def observe_attempt(self, event: AttemptEnded) -> None:
        if isinstance(self.tally, SharedTally):  # a stream's attempt ends when its answer starts
            self.tally.keep_in_flight_fresh()
        if event.error is not None:
            self.tally.count(ERRORS, (event.backend, event.error))
        if event.decision == "failover":
            self.tally.count(FAILOVERS, (event.backend,))


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


#: ``proxy.plugin_state`` key of this exporter's :class:`ProxyMetrics`.
STATE_KEY = "hookproxy.metrics"


class MetricsPage(Frontend):
    """No protocol of its own: only the ``/metrics`` endpoint."""

    name = "metrics"

    def endpoints(self) -> list[Endpoint]:
        async def page(_request: HTTPRequest, proxy: Proxy) -> JSONAnswer:
            metrics: ProxyMetrics = proxy.plugin_state[STATE_KEY]
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
        proxy.plugin_state[STATE_KEY] = ProxyMetrics(proxy)
        register(MetricsPage())


@hookimpl
def request_ended(event: RequestEnded, proxy: Proxy) -> None:
    metrics = proxy.plugin_state.get(STATE_KEY)
    if metrics is not None:
        metrics.observe_request(event)


@hookimpl
def attempt_ended(event: AttemptEnded, proxy: Proxy) -> None:
    metrics = proxy.plugin_state.get(STATE_KEY)
    if metrics is not None:
        metrics.observe_attempt(event)
