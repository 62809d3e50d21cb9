"""Prometheus metrics (`orpheus_gateway_` prefix); the time-to-first-audio window is
`orpheus_tts.ttfa_window`'s.

Each app gets its own registry, so several gateways can live in one process (tests). Series
about streams and workers carry the model `pool` (a configured name, at most
`pools.MAX_POOLS` of them: bounded cardinality); `sum()` over them is the gateway's total.
"""

from __future__ import annotations

from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


TTFA_BUCKETS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.ttfa = Histogram(
            "orpheus_gateway_ttfa_seconds",
            "Request arrival to the first audio byte sent to the client.",
            ["api", "pool"], buckets=TTFA_BUCKETS, registry=r)
        self.streams_inflight = Gauge(
            "orpheus_gateway_streams_inflight", "Streams open through the gateway.", ["pool"],
            registry=r)
        self.queue_depth = Gauge(
            "orpheus_gateway_queue_depth",
            "Requests waiting anywhere: gateway (not yet on a worker) plus workers' queues.",
            ["pool"], registry=r)
        self.requests = Counter(
            "orpheus_gateway_requests_total", "Stream requests accepted, by API.",
            ["api", "pool"], registry=r)
        self.errors = Counter(
            "orpheus_gateway_errors_total", "Errors returned to clients, by code.", ["code"],
            registry=r)
        self.failovers = Counter(
            "orpheus_gateway_upstream_failovers_total",
            "Requests moved to another worker before their first byte.", registry=r)
        self.breaker_state = Gauge(
            "orpheus_gateway_breaker_state",
            "Circuit breaker per worker (by worker id): 0 closed, 1 half-open, 2 open.",
            ["worker_id"], registry=r)
        self.rate_limited = Counter(
            "orpheus_gateway_rate_limit_rejections_total",
            "Requests refused with 429 by the per-key limits.", ["limit"], registry=r)
        self.capacity = Gauge(
            "orpheus_gateway_capacity",
            "Concurrent streams the ready workers report they can hold (sum).", ["pool"],
            registry=r)
        self.workers_ready = Gauge(
            "orpheus_gateway_workers_ready", "Workers eligible for new streams.", ["pool"],
            registry=r)
        self._stream_series: dict[tuple[str, str], StreamSeries] = {}

    def stream_series(self, api: str, pool: str) -> "StreamSeries":
        """The series a stream of `api` on `pool` updates, looked up once per pair: `labels()`
        takes a lock and checks its values on every call. Pairs are few (APIs × pools)."""
        series = self._stream_series.get((api, pool))
        if series is None:
            series = self._stream_series[(api, pool)] = StreamSeries(
                self.requests.labels(api, pool), self.streams_inflight.labels(pool),
                self.ttfa.labels(api, pool))
        return series


class StreamSeries(NamedTuple):
    requests: Counter
    inflight: Gauge
    ttfa: Histogram
