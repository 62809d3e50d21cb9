"""Client-side endpoint choice: a score per endpoint and a circuit breaker per endpoint.

Plain synchronous state with an injectable clock, so it can be tested without any I/O. The
SDK calls `Router.pick` before each attempt and reports what happened with `record_*`.

Score (milliseconds, lower is better) =
    EWMA of the client-measured time to first audio (unknown endpoints count as 0, so each
    is tried once)
  + `queue_cost_ms` × the latest queue-depth hint
  + `inflight_cost_ms` × (the latest inflight hint + this client's own open attempts)

Hints come from response headers (`X-Orpheus-Queue-Depth`, `X-Orpheus-Inflight`) and
`metrics` frames, and are forgotten after `hint_ttl_s` so a busy endpoint is not shunned
forever. Ties keep the order of `base_urls`.

Breaker: `closed` → `open` after `failure_threshold` consecutive failures; after
`cooldown_s` one probe is let through (`half_open`); the probe's success closes it, its
failure re-opens it for another cooldown. A probe that ends neither way (cancelled hedge,
caller stopped reading) gives its permit back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from orpheus_tts.breaker import BreakerState, CircuitBreaker
from orpheus_tts.errors import CircuitOpenError


@dataclass(frozen=True)
class EndpointSnapshot:
    """One endpoint as `OrpheusTTS.endpoints()` reports it."""

    url: str
    score_ms: float
    ttfa_ewma_ms: float | None
    queue_depth: int | None
    inflight: int | None
    active: int
    breaker: BreakerState
    consecutive_failures: int


class Endpoint:
    """Score inputs and breaker of one base URL."""

    def __init__(self, url: str, circuit: CircuitBreaker):
        self.url = url
        self.ttfa_ewma_ms: float | None = None
        self.queue_depth: int | None = None
        self.inflight: int | None = None
        self.hints_at: float | None = None
        self.active = 0  # this client's attempts in flight on this endpoint
        self.circuit = circuit

    @property
    def breaker(self) -> BreakerState:
        return self.circuit.state

    @property
    def consecutive_failures(self) -> int:
        return self.circuit.consecutive_failures


class Router:
    def __init__(
        self,
        urls: Iterable[str],
        *,
        ewma_alpha: float = 0.3,
        queue_cost_ms: float = 250.0,
        inflight_cost_ms: float = 25.0,
        hint_ttl_s: float = 10.0,
        failure_threshold: int = 3,
        cooldown_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self.endpoints = [Endpoint(u, CircuitBreaker(failure_threshold, cooldown_s, clock))
                          for u in urls]
        if not self.endpoints:
            raise ValueError("at least one base URL is required")
        if len({e.url for e in self.endpoints}) != len(self.endpoints):
            raise ValueError("base URLs must be distinct")
        self.ewma_alpha = ewma_alpha
        self.queue_cost_ms = queue_cost_ms
        self.inflight_cost_ms = inflight_cost_ms
        self.hint_ttl_s = hint_ttl_s
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self.clock = clock
        self._by_url = {e.url: e for e in self.endpoints}

    # --- scoring -----------------------------------------------------------------------------
    def score(self, ep: Endpoint) -> float:
        score = ep.ttfa_ewma_ms or 0.0
        fresh = ep.hints_at is not None and self.clock() - ep.hints_at <= self.hint_ttl_s
        queue = (ep.queue_depth or 0) if fresh else 0
        inflight = (ep.inflight or 0) if fresh else 0
        return score + self.queue_cost_ms * queue + self.inflight_cost_ms * (inflight + ep.active)

    def pick(self, exclude: Iterable[str] = ()) -> Endpoint | None:
        """The best endpoint that may take a request now, not in `exclude`; None if none.

        Picking an endpoint whose breaker is open and cooled down makes this attempt its
        half-open probe. The caller must report the attempt's outcome (`record_success`,
        `record_failure` or `release`).
        """
        skip = set(exclude)
        candidates = [e for e in self.endpoints if e.url not in skip and e.circuit.available()]
        if not candidates:
            return None
        best = min(candidates, key=self.score)  # min() keeps the first of equals
        best.circuit.acquire()
        best.active += 1
        return best

    def pick_first(self) -> Endpoint:
        """`pick()` for a new request: raises `CircuitOpenError` when every breaker is open."""
        ep = self.pick()
        if ep is None:
            retry_in = min((e.circuit.retry_in() for e in self.endpoints), default=0.0)
            raise CircuitOpenError([e.url for e in self.endpoints], retry_in)
        return ep

    # --- outcomes ----------------------------------------------------------------------------
    def _finish(self, ep: Endpoint) -> None:
        ep.active = max(0, ep.active - 1)

    def record_hints(self, url: str, queue_depth: int | None, inflight: int | None) -> None:
        ep = self._by_url[url]
        if queue_depth is None and inflight is None:
            return
        if queue_depth is not None:
            ep.queue_depth = queue_depth
        if inflight is not None:
            ep.inflight = inflight
        ep.hints_at = self.clock()

    def record_ttfa(self, url: str, ttfa_ms: float) -> None:
        ep = self._by_url[url]
        if ep.ttfa_ewma_ms is None:
            ep.ttfa_ewma_ms = ttfa_ms
        else:
            ep.ttfa_ewma_ms += self.ewma_alpha * (ttfa_ms - ep.ttfa_ewma_ms)

    def record_slow(self, url: str, waited_ms: float) -> None:
        """An attempt abandoned without audio after `waited_ms`: its TTFA is at least that."""
        ep = self._by_url[url]
        if ep.ttfa_ewma_ms is None or waited_ms > ep.ttfa_ewma_ms:
            self.record_ttfa(url, waited_ms)

    def record_success(self, url: str) -> None:
        ep = self._by_url[url]
        self._finish(ep)
        ep.circuit.success()

    def record_failure(self, url: str) -> None:
        ep = self._by_url[url]
        self._finish(ep)
        ep.circuit.failure()

    def release(self, url: str) -> None:
        """The attempt ended with no verdict on the endpoint's health."""
        ep = self._by_url[url]
        self._finish(ep)
        ep.circuit.release_trial()

    def snapshot(self) -> list[EndpointSnapshot]:
        return [
            EndpointSnapshot(
                url=e.url,
                score_ms=self.score(e),
                ttfa_ewma_ms=e.ttfa_ewma_ms,
                queue_depth=e.queue_depth,
                inflight=e.inflight,
                active=e.active,
                breaker=e.breaker,
                consecutive_failures=e.consecutive_failures,
            )
            for e in self.endpoints
        ]
