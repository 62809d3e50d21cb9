"""A discrete-time simulator for comparing autoscaling policies on the same arrival traces.

The model, in one paragraph: requests arrive (a Poisson process whose rate follows a trace)
and wait in the gateway's FIFO queue until a slot frees on a ready, non-draining worker. A
worker has `streams_per_worker` slots: the concurrent streams it generates faster than real
time. A stream's time to first audio is its queue wait plus a prefill time that grows with the
worker's load; it holds its slot for audio length x real-time factor, which also grows with
load. A new worker serves after a cold start (scheduling, image, model load); a removed one
drains its streams and costs until it is empty. Each second the simulator dispatches what it
can (event-accurate within the second: a request starts at the later of its arrival and the
moment its slot frees), and every policy interval it hands the policy what the gateway's
`/v1/system` would report: queue depth, in-flight streams, ready workers, their capacity and
the p95 time to first audio over a sliding window.

Metrics per run: seconds in which the p95 time to first audio of the requests that arrived in
the trailing 10 s is above target (what callers felt), worker-seconds (every started, ready or
draining worker, every second), scale events (replica-count changes) and reversals (a change
in the opposite direction of the previous one).

Policies: ours (`policy.decide`), an HPA on queue depth alone (the Kubernetes HPA algorithm
with its default behaviour), and KubeAI's moving average of active requests.
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

from orpheus_operator.autoscaler.policy import (DEFAULT_INTERVAL_S, AutoscalingSpec, PolicyState,
                                               Signals, decide)

SLO_WINDOW_S = 10  # callers' p95 is judged over the requests that arrived in the last 10 s


# --- capacity model ----------------------------------------------------------------------------
@dataclass(frozen=True)
class CapacityModel:
    """One worker (one GPU running vLLM + SNAC). Defaults: a plausible Orpheus-3B-on-one-GPU."""

    streams_per_worker: int = 8  # concurrent streams before the real-time factor reaches 1
    rtf_idle: float = 0.35  # generation time / audio time with one stream
    rtf_full: float = 0.95  # ... with every slot busy (still under 1: real time holds)
    ttfa_idle_ms: float = 250.0  # prefill + first SNAC window, one stream
    ttfa_full_ms: float = 700.0  # ... in a full batch
    cold_start_s: float = 60.0  # replica requested -> ready (schedule, pull, load weights)
    cold_start_jitter_s: float = 15.0
    audio_mean_s: float = 8.0  # lognormal audio length per request
    audio_sigma: float = 0.6

    def workers_for(self, rate: float, utilization: float = 0.75) -> int:
        """Workers that serve `rate` requests/s at `utilization` (Little's law, mid-load RTF)."""
        mid_rtf = (self.rtf_idle + self.rtf_full) / 2
        streams = rate * self.audio_mean_s * mid_rtf
        return max(1, math.ceil(streams / (self.streams_per_worker * utilization)))

    def load_fraction(self, busy: int) -> float:
        return min(busy, self.streams_per_worker) / self.streams_per_worker

    def rtf(self, busy: int) -> float:
        return self.rtf_idle + (self.rtf_full - self.rtf_idle) * self.load_fraction(busy)

    def prefill_ms(self, busy: int) -> float:
        f = self.load_fraction(busy)
        return self.ttfa_idle_ms + (self.ttfa_full_ms - self.ttfa_idle_ms) * f * f


# --- traces ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Trace:
    """Arrival rate per second, and the requests drawn from it with a seed."""

    name: str
    rates: tuple[float, ...]
    seed: int

    @property
    def duration_s(self) -> int:
        return len(self.rates)

    def requests(self, model: CapacityModel) -> list[tuple[float, float]]:
        """(arrival time, audio seconds), sorted; the same for every policy run on the trace."""
        rng = random.Random(self.seed * 7919 + 1)
        mu = math.log(model.audio_mean_s) - model.audio_sigma**2 / 2
        out: list[tuple[float, float]] = []
        for t, rate in enumerate(self.rates):
            n = _poisson(rng, rate)
            times = sorted(t + rng.random() for _ in range(n))
            out.extend((at, rng.lognormvariate(mu, model.audio_sigma)) for at in times)
        return out


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 50:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def steady(seed: int, duration_s: int = 3600, rate: float = 6.0) -> Trace:
    return Trace("steady", tuple(rate for _ in range(duration_s)), seed)


def step(seed: int, duration_s: int = 3600, low: float = 3.0, high: float = 10.0) -> Trace:
    """Low, then high for the middle half, then low again."""
    a, b = duration_s // 4, 3 * duration_s // 4
    return Trace("step", tuple(high if a <= t < b else low for t in range(duration_s)), seed)


def burst(seed: int, duration_s: int = 3600, base: float = 3.0, bursts: int = 5) -> Trace:
    """A base rate with bursts of 3-5x lasting 1-4 minutes at random times."""
    rng = random.Random(seed)
    rates = [base] * duration_s
    for _ in range(bursts):
        start = rng.randrange(120, duration_s - 300)
        length = rng.randrange(60, 240)
        factor = rng.uniform(3.0, 5.0)
        ramp = 10
        for t in range(start, min(duration_s, start + length)):
            edge = min(t - start, start + length - t, ramp) / ramp
            rates[t] = max(rates[t], base * (1 + (factor - 1) * edge))
    return Trace("burst", tuple(rates), seed)


def diurnal(
    seed: int, duration_s: int = 3600, low: float = 1.5, high: float = 12.0, periods: float = 2.0
) -> Trace:
    """A compressed day (twice over): a smooth swing between low and high with a noisy drift."""
    rng = random.Random(seed)
    rates = []
    drift = 0.0
    for t in range(duration_s):
        phase = 2 * math.pi * periods * t / duration_s
        level = low + (high - low) * (1 - math.cos(phase)) / 2
        drift = 0.995 * drift + rng.gauss(0, 0.03)  # AR(1) multiplicative noise, ~+-20 %
        rates.append(max(0.0, level * (1 + drift)))
    return Trace("diurnal", tuple(rates), seed)


def nights(seed: int, duration_s: int = 3600, high: float = 8.0, night: float = 0.4,
           periods: float = 2.0) -> Trace:
    """A compressed day (twice over) whose nights are idle: no request for `night` of each
    period, then a noisy bell of traffic. Scale to zero pays a cold start each morning."""
    rng = random.Random(seed)
    rates = []
    drift = 0.0
    period = duration_s / periods
    for t in range(duration_s):
        phase = (t % period) / period
        drift = 0.995 * drift + rng.gauss(0, 0.03)
        if phase < night:
            rates.append(0.0)
            continue
        day = (phase - night) / (1 - night)
        rates.append(max(0.0, high * math.sin(math.pi * day) ** 2 * (1 + drift)))
    return Trace("nights", tuple(rates), seed)


TRACES: dict[str, Callable[[int], Trace]] = {
    "steady": steady,
    "step": step,
    "burst": burst,
    "diurnal": diurnal,
    "nights": nights,
}


# --- policies ----------------------------------------------------------------------------------
class Autoscaler(Protocol):
    name: str
    interval_s: float

    def tick(self, signals: Signals, current: int) -> int:
        """The replica count to request, given an observation and the current request."""


class OursPolicy:
    """`policy.decide`, exactly as the operator's controller runs it."""

    name = "ours"

    def __init__(self, spec: AutoscalingSpec, interval_s: float = DEFAULT_INTERVAL_S):
        self.spec = spec
        self.interval_s = interval_s
        self.state = PolicyState()

    def tick(self, signals: Signals, current: int) -> int:
        decision, self.state = decide(self.spec, self.state, signals, current)
        return decision.desired


class HPAQueuePolicy:
    """The Kubernetes HPA (autoscaling/v2) on one external metric: gateway queue depth.

    `desired = ceil(current * usage / target)`, with usage the queue per replica
    (AverageValue target), skipped inside the 10 % tolerance; the scale-down recommendation
    is the highest of the last 300 s (stabilization window); default rate limits: up by
    max(100 %, 4 pods) per 15 s, down by 100 % per 15 s; sync every 15 s. This is what
    KEDA's queue-length scaler (production-stack's recipe) produces.
    """

    name = "hpa-queue"

    def __init__(
        self,
        min_replicas: int,
        max_replicas: int,
        target_queue_per_replica: float = 2.0,
        interval_s: float = 15.0,
        tolerance: float = 0.1,
        down_stabilization_s: float = 300.0,
    ):
        self.min, self.max = min_replicas, max_replicas
        self.target = target_queue_per_replica
        self.interval_s = interval_s
        self.tolerance = tolerance
        self.down_window = down_stabilization_s
        self.recs: deque[tuple[float, int]] = deque()

    def tick(self, signals: Signals, current: int) -> int:
        current = max(current, 1)
        ratio = signals.queue_depth / (self.target * current)
        raw = current if abs(ratio - 1.0) <= self.tolerance else math.ceil(ratio * current)
        raw = max(self.min, min(self.max, raw))
        now = signals.time
        self.recs.append((now, raw))
        while self.recs and now - self.recs[0][0] >= self.down_window:
            self.recs.popleft()
        stabilized = max(n for _, n in self.recs) if raw < current else raw
        up_limit = max(2 * current, current + 4)
        down_limit = 0  # 100 % per period
        return max(self.min, min(self.max, up_limit, max(down_limit, stabilized)))


class KubeAIPolicy:
    """KubeAI's model autoscaler: a simple moving average of active requests.

    Every `interval_s`: push the active requests (in flight plus waiting in its proxy) into
    a window of `time_window_s / interval_s` samples (zeros at start), `desired =
    ceil(average / target_requests)` within bounds; up at once, down only after
    `ceil(scale_down_delay_s / interval_s)` consecutive lower results.
    """

    name = "kubeai"

    def __init__(
        self,
        min_replicas: int,
        max_replicas: int,
        target_requests: float,
        interval_s: float = 10.0,
        time_window_s: float = 120.0,
        scale_down_delay_s: float = 30.0,
    ):
        self.min, self.max = min_replicas, max_replicas
        self.target = target_requests
        self.interval_s = interval_s
        samples = math.ceil(time_window_s / interval_s)
        self.window: deque[float] = deque([0.0] * samples, maxlen=samples)
        self.required_downs = math.ceil(scale_down_delay_s / interval_s)
        self.consecutive_downs = 0
        self.warm = False

    def tick(self, signals: Signals, current: int) -> int:
        active = float(signals.inflight + signals.queue_depth)
        if not self.warm:  # start as if it had been running at the opening load
            self.window.extend([active] * len(self.window))
            self.warm = True
        self.window.append(active)
        avg = sum(self.window) / len(self.window)
        desired = max(self.min, min(self.max, math.ceil(avg / self.target)))
        if desired < current:
            if self.consecutive_downs < self.required_downs:
                self.consecutive_downs += 1
                return current
        else:
            self.consecutive_downs = 0
        return desired


# --- the simulation ----------------------------------------------------------------------------
@dataclass
class _Worker:
    requested_at: float
    ready_at: float
    slots: list[float]  # heap of the times each slot frees
    draining: bool = False

    def busy(self, t: float) -> int:
        return sum(1 for s in self.slots if s > t)


@dataclass
class RunResult:
    policy: str
    trace: str
    slo_violation_s: int
    worker_seconds: float
    scale_events: int
    reversals: int
    requests: int
    ttfa_p95_ms: float
    replicas: list[int] = field(repr=False)  # requested replicas, per second
    ready: list[int] = field(repr=False)
    p95_ms: list[float | None] = field(repr=False)  # callers' trailing-10 s p95, per second

    def summary(self) -> dict[str, float | int | str]:
        return {
            "policy": self.policy,
            "trace": self.trace,
            "slo_violation_s": self.slo_violation_s,
            "worker_seconds": round(self.worker_seconds),
            "scale_events": self.scale_events,
            "reversals": self.reversals,
            "requests": self.requests,
            "ttfa_p95_ms": round(self.ttfa_p95_ms, 1),
        }


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[idx]


def simulate(
    trace: Trace,
    policy: Autoscaler,
    model: CapacityModel = CapacityModel(),
    *,
    initial_replicas: int = 1,
    target_ttfa_p95_ms: float = 1000.0,
    metrics_window_s: float = 30.0,
    seed: int = 0,
) -> RunResult:
    """Run one policy over one trace; deterministic for a given trace, policy and seed."""
    rng = random.Random(seed)
    requests = trace.requests(model)
    duration = trace.duration_s
    c = model.streams_per_worker

    def cold_start() -> float:
        return max(1.0, model.cold_start_s + rng.uniform(-1, 1) * model.cold_start_jitter_s)

    workers: list[_Worker] = [_Worker(-1.0, 0.0, [0.0] * c) for _ in range(initial_replicas)]
    requested = initial_replicas
    queue: deque[int] = deque()  # request indices, FIFO
    ttfa = [math.nan] * len(requests)
    first_audio: deque[tuple[float, float]] = deque()  # (time, ttfa_ms) for the gateway's p95
    next_req = 0
    next_tick = 0.0
    worker_seconds = 0.0
    replicas_trace: list[int] = []
    ready_trace: list[int] = []
    events = reversals = last_dir = 0

    for t in range(duration):
        end = t + 1.0
        while next_req < len(requests) and requests[next_req][0] < end:
            queue.append(next_req)
            next_req += 1
        # Dispatch FIFO to the earliest free slot of an accepting worker, within this second.
        accepting = [w for w in workers if not w.draining]
        while queue and accepting:
            idx = queue[0]
            arrival, audio_s = requests[idx]
            best = min(accepting, key=lambda w: (max(w.slots[0], w.ready_at), w.busy(arrival)))
            start = max(arrival, best.slots[0], best.ready_at)
            if start >= end:
                break
            queue.popleft()
            busy = best.busy(start)
            prefill_ms = model.prefill_ms(busy + 1)
            ttfa[idx] = (start - arrival) * 1000.0 + prefill_ms
            first_audio.append((start + prefill_ms / 1000.0, ttfa[idx]))
            heapq.heapreplace(best.slots, start + audio_s * model.rtf(busy + 1))
        # Drained workers leave; every other worker costs this second.
        workers = [w for w in workers if not (w.draining and max(w.slots) <= t)]
        worker_seconds += len(workers)

        if t >= next_tick:
            next_tick = t + policy.interval_s
            while first_audio and first_audio[0][0] < end - metrics_window_s:
                first_audio.popleft()
            ready = [w for w in workers if not w.draining and w.ready_at <= end]
            recent = [ms for at, ms in first_audio if at <= end]
            signals = Signals(
                time=end,
                queue_depth=len(queue),
                inflight=sum(w.busy(end) for w in workers),
                ready_workers=len(ready),
                capacity=c * len(ready),
                ttfa_p95_ms=_percentile(recent, 0.95) if recent else None,
                window_s=metrics_window_s,
            )
            want = policy.tick(signals, requested)
            if want != requested:
                direction = 1 if want > requested else -1
                events += 1
                reversals += int(last_dir != 0 and direction != last_dir)
                last_dir = direction
                _resize(workers, want, end, cold_start, c)
                requested = want
        replicas_trace.append(requested)
        ready_trace.append(sum(1 for w in workers if not w.draining and w.ready_at <= end))

    for idx in queue:  # never served: they waited until the end at least
        ttfa[idx] = (duration - requests[idx][0]) * 1000.0
    p95_series = _trailing_p95(requests, ttfa, duration)
    return RunResult(
        policy=policy.name,
        trace=trace.name,
        slo_violation_s=sum(1 for p in p95_series if p is not None and p > target_ttfa_p95_ms),
        worker_seconds=worker_seconds,
        scale_events=events,
        reversals=reversals,
        requests=len(requests),
        ttfa_p95_ms=_percentile([x for x in ttfa if not math.isnan(x)], 0.95) if requests else 0.0,
        replicas=replicas_trace,
        ready=ready_trace,
        p95_ms=p95_series,
    )


def _resize(
    workers: list[_Worker], want: int, now: float, cold_start: Callable[[], float], c: int
) -> None:
    active = [w for w in workers if not w.draining]
    for _ in range(want - len(active)):
        workers.append(_Worker(now, now + cold_start(), [0.0] * c))
    surplus = len(active) - want
    if surplus > 0:
        # Cancel workers still starting first (newest first), then drain the least busy.
        order = sorted(active, key=lambda w: (w.ready_at <= now, w.busy(now), -w.requested_at))
        for w in order[:surplus]:
            w.draining = True
            if w.ready_at > now:
                w.slots = [0.0] * c  # never served: leaves at once


def _trailing_p95(
    requests: list[tuple[float, float]], ttfa: list[float], duration: int
) -> list[float | None]:
    """Per second: p95 time to first audio of the requests that arrived in the last 10 s."""
    arrivals = [a for a, _ in requests]
    series: list[float | None] = []
    for t in range(duration):
        lo = bisect.bisect_left(arrivals, t + 1 - SLO_WINDOW_S)
        hi = bisect.bisect_left(arrivals, t + 1)
        window = ttfa[lo:hi]
        series.append(_percentile(window, 0.95) if window else None)
    return series


# --- the comparison ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Scenario:
    """Everything a comparison run needs; the benchmark and the tests share the defaults."""

    min_replicas: int = 1
    max_replicas: int = 20
    target_ttfa_p95_ms: float = 1000.0
    model: CapacityModel = CapacityModel()

    def ours(self) -> OursPolicy:
        return OursPolicy(
            AutoscalingSpec(
                min_replicas=self.min_replicas,
                max_replicas=self.max_replicas,
                target_ttfa_p95_ms=self.target_ttfa_p95_ms,
                worker_capacity=self.model.streams_per_worker,
            )
        )

    def hpa(self) -> HPAQueuePolicy:
        return HPAQueuePolicy(self.min_replicas, self.max_replicas)

    def kubeai(self) -> KubeAIPolicy:
        return KubeAIPolicy(
            self.min_replicas,
            self.max_replicas,
            target_requests=0.75 * self.model.streams_per_worker,
        )

    def policies(self) -> list[Autoscaler]:
        return [self.ours(), self.hpa(), self.kubeai()]


    def initial_replicas(self, trace: Trace) -> int:
        """Every policy starts warm, sized for the trace's opening rate."""
        n = self.model.workers_for(sum(trace.rates[:60]) / 60)
        return max(self.min_replicas, min(self.max_replicas, n))


def compare(traces: Sequence[Trace], scenario: Scenario = Scenario()) -> list[RunResult]:
    results = []
    for trace in traces:
        for policy in scenario.policies():
            results.append(
                simulate(
                    trace,
                    policy,
                    scenario.model,
                    initial_replicas=scenario.initial_replicas(trace),
                    target_ttfa_p95_ms=scenario.target_ttfa_p95_ms,
                )
            )
    return results
