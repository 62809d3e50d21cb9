"""Where the autoscaler's observations come from.

The default source is the gateway's `GET /v1/system` (`orpheus_tts.protocol.SystemSnapshot`):
queue depth, streams in flight, per-worker readiness and capacity, and the p95 time to first
audio over the gateway's sliding window. A Prometheus server can stand in for the gateway
(`PrometheusSource`), for clusters that already aggregate several gateway replicas there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import httpx

from orpheus_tts.protocol import SYSTEM_PATH, SystemSnapshot

from .policy import Signals

DEFAULT_TIMEOUT_S = 5.0


class SignalsUnavailable(Exception):
    """The source could not be read or said something unusable; the tick changes nothing."""


class SignalsUnauthorized(SignalsUnavailable):
    """The gateway refused the key: re-read it before the next tick."""


class SignalSource(Protocol):
    def read(self, now: float, ready_fallback: int) -> Signals: ...

    def read_pools(self, now: float, ready_fallbacks: dict[str, int]) -> dict[str, Signals]:
        """Each model pool's own signals, by pool name."""
        ...


def signals_from_snapshot(snapshot: SystemSnapshot, now: float, ready_fallback: int) -> Signals:
    """Turn a gateway snapshot into policy input.

    Ready workers and their capacity come from the gateway's worker list (what it can route to);
    a gateway that lists no workers falls back to the Deployment's ready count.
    """
    if snapshot.workers:
        ready = [w for w in snapshot.workers if w.ready and w.breaker != "open"]
        ready_count = len(ready)
        caps = [w.capacity for w in ready if w.capacity]
        capacity = sum(caps) if len(caps) == len(ready) and caps else snapshot.capacity
    else:
        ready_count = ready_fallback
        capacity = snapshot.capacity
    return Signals(
        time=now,
        queue_depth=max(0, snapshot.queue_depth),
        inflight=max(0, snapshot.inflight),
        ready_workers=ready_count,
        capacity=capacity,
        ttfa_p95_ms=snapshot.ttfa_p95_ms,
        window_s=snapshot.window_s,
    )


def signals_by_pool(snapshot: SystemSnapshot, now: float,
                    ready_fallbacks: dict[str, int]) -> dict[str, Signals]:
    """Each pool's own queue, streams, ready workers and p95 time to first audio, from the
    gateway's per-pool blocks (`SystemSnapshot.pools`) and its workers' `pool`.

    A pool the operator runs but the gateway does not report (its pools file not yet
    reloaded, or another gateway answering) has no signals: the tick changes nothing."""
    reported = {pool.name: pool for pool in snapshot.pools}
    missing = sorted(set(ready_fallbacks) - set(reported))
    if missing:
        raise SignalsUnavailable(f"the gateway reports no pool {', '.join(missing)} "
                                 f"(it reports {', '.join(sorted(reported)) or 'none'})")
    signals = {}
    for name in ready_fallbacks:
        pool = reported[name]
        workers = [w for w in snapshot.workers if w.pool == name]
        if workers:
            ready = [w for w in workers if w.ready and w.breaker != "open"]
            caps = [w.capacity for w in ready if w.capacity]
            ready_count = len(ready)
            capacity = sum(caps) if len(caps) == len(ready) and caps else pool.capacity
        else:
            ready_count = pool.workers_ready if pool.workers else ready_fallbacks[name]
            capacity = pool.capacity
        signals[name] = Signals(
            time=now, queue_depth=max(0, pool.queue_depth), inflight=max(0, pool.inflight),
            ready_workers=ready_count, capacity=capacity, ttfa_p95_ms=pool.ttfa_p95_ms,
            window_s=snapshot.window_s)
    return signals


@dataclass
class GatewaySource:
    """Reads `{base_url}/v1/system` with a short timeout, with the cluster's system key.

    The key (`api_key`) is the one the operator keeps in the cluster's `NAME-system-key`
    Secret and the gateway accepts for `/v1/system` only (docs/autoscaling.md, threat model).
    """

    base_url: str
    api_key: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    transport: httpx.BaseTransport | None = None

    @property
    def url(self) -> str:
        base = self.base_url.rstrip("/")
        return base if base.endswith(SYSTEM_PATH) else base + SYSTEM_PATH

    def fetch(self) -> SystemSnapshot:
        try:
            with httpx.Client(timeout=self.timeout_s, transport=self.transport) as http:
                headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
                response = http.get(self.url, headers=headers)
        except httpx.HTTPError as exc:
            raise SignalsUnavailable(f"{self.url}: {exc.__class__.__name__}: {exc}") from exc
        if response.status_code == 401:
            raise SignalsUnauthorized(f"{self.url}: HTTP 401 (the gateway refused the system "
                                      f"key)")
        if response.status_code != 200:
            raise SignalsUnavailable(f"{self.url}: HTTP {response.status_code}")
        try:
            return SystemSnapshot.model_validate_json(response.content)
        except ValueError as exc:
            raise SignalsUnavailable(f"{self.url}: not a SystemSnapshot: {exc}") from exc

    def read(self, now: float, ready_fallback: int) -> Signals:
        return signals_from_snapshot(self.fetch(), now, ready_fallback)

    def read_pools(self, now: float, ready_fallbacks: dict[str, int]) -> dict[str, Signals]:
        return signals_by_pool(self.fetch(), now, ready_fallbacks)


@dataclass
class PrometheusSource:
    """Instant queries against a Prometheus HTTP API; each query must return one scalar.

    The defaults match the gateway's exported metrics (`orpheus_gateway.metrics`); with
    several gateway replicas the sums add their queues and streams. The p95 comes from the
    TTFA histogram over one minute.
    """

    base_url: str
    queue_query: str = "sum(orpheus_gateway_queue_depth)"
    inflight_query: str = "sum(orpheus_gateway_streams_inflight)"
    ready_query: str = "sum(orpheus_gateway_workers_ready)"
    capacity_query: str | None = None  # the gateway exports no capacity series
    ttfa_p95_query: str = (
        "1000 * histogram_quantile(0.95, "
        "sum(rate(orpheus_gateway_ttfa_seconds_bucket[1m])) by (le))"
    )
    window_s: float = 60.0
    timeout_s: float = DEFAULT_TIMEOUT_S
    transport: httpx.BaseTransport | None = None

    def _scalar(self, http: httpx.Client, query: str) -> float | None:
        try:
            response = http.get(self.base_url.rstrip("/") + "/api/v1/query",
                                params={"query": query})
            payload = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise SignalsUnavailable(f"prometheus {query!r}: {exc}") from exc
        if response.status_code != 200 or payload.get("status") != "success":
            problem = payload.get("error", response.status_code)
            raise SignalsUnavailable(f"prometheus {query!r}: {problem}")
        result = payload.get("data", {}).get("result") or []
        if not result:
            return None
        value = float(result[0]["value"][1])
        return None if math.isnan(value) else value

    def read_pools(self, now: float, ready_fallbacks: dict[str, int]) -> dict[str, Signals]:
        raise SignalsUnavailable("the Prometheus source reads a single-model cluster; a "
                                 "cluster with spec.pools is scaled on the gateway's "
                                 "per-pool /v1/system")

    def read(self, now: float, ready_fallback: int) -> Signals:
        with httpx.Client(timeout=self.timeout_s, transport=self.transport) as http:
            queue = self._scalar(http, self.queue_query)
            inflight = self._scalar(http, self.inflight_query)
            ready = self._scalar(http, self.ready_query)
            capacity = self._scalar(http, self.capacity_query) if self.capacity_query else None
            p95 = self._scalar(http, self.ttfa_p95_query)
        if queue is None or inflight is None:
            raise SignalsUnavailable("prometheus returned no queue depth or in-flight series")
        return Signals(
            time=now,
            queue_depth=int(round(queue)),
            inflight=int(round(inflight)),
            ready_workers=ready_fallback if ready is None else int(round(ready)),
            capacity=None if capacity is None else int(round(capacity)),
            ttfa_p95_ms=p95,
            window_s=self.window_s,
        )
