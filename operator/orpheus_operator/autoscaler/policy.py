"""The scaling policy: a pure function of the spec, the carried state and one observation.

`decide(spec, state, signals, current)` returns a `Decision` and the next `PolicyState`.
Nothing here does I/O or reads a clock: the controller (and the simulator) hand in the time.
The state is small and JSON-serialisable so it can live in the custom resource's status and
survive an operator restart.

Two signals, each turned into a desired worker count:

- **load** (the queue signal): streams in flight plus the requests queued beyond the allowed
  `target_queue_depth_per_worker` per ready worker, spread over workers run at
  `target_utilization` of their concurrent-stream capacity;
- **latency**: when the gateway's p95 time to first audio is above target (past the tolerance
  band), the ready count scaled by p95/target (at least one more, at most `max_latency_ratio`
  times). A latency reading is trusted only once the window it covers starts after the last
  capacity increase: older samples describe a smaller fleet.

The larger count wins. Workers still starting count as capacity on the way: "current" is the
requested replica count, not the ready one, so a slow model load does not cause a stampede.
Up-scaling follows the highest recommendation at once (or the lowest over the optional
up-stabilization window); down-scaling needs both signals comfortably under target for the
whole down-stabilization window and then follows the highest down recommendation seen in that
window, which aims lower than the up one: the count that would run at `scale_down_utilization`
(hysteresis, so a fleet that just shrank is not at the edge of growing again). Both directions
are step-limited, and the result stays within [min, max].

Scale to zero (`min_replicas` 0): with no worker, any request the gateway holds is demand for
one; the last worker goes only after the whole down-stabilization window saw nothing queued or
in flight (the down recommendation is 0 only for an idle fleet).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Mapping


DEFAULT_INTERVAL_S = 10.0  # seconds between decisions


@dataclass(frozen=True)
class AutoscalingSpec:
    """Parameters (the CR's `spec.autoscaling` plus the worker replica bounds)."""

    min_replicas: int = 1
    max_replicas: int = 10
    target_queue_depth_per_worker: float = 1.0
    target_ttfa_p95_ms: float = 1000.0
    scale_up_stabilization_s: float = 0.0
    scale_down_stabilization_s: float = 90.0
    max_scale_up_step: int = 10
    max_scale_down_step: int = 4
    target_utilization: float = 0.8
    tolerance: float = 0.1
    scale_down_utilization: float = 0.6
    worker_capacity: int = 8  # concurrent streams per worker when the gateway reports none
    # Internal constants (not CR fields), documented in docs/autoscaling.md.
    comfort: float = 0.7
    max_latency_ratio: float = 1.5
    scale_down_settle_s: float = 30.0  # between two scale-down steps

    def __post_init__(self) -> None:
        if self.min_replicas < 0 or self.max_replicas < max(self.min_replicas, 1):
            raise ValueError(
                f"replica bounds must satisfy 0 <= min <= max and max >= 1, "
                f"got min={self.min_replicas} max={self.max_replicas}"
            )
        if self.max_scale_up_step < 1 or self.max_scale_down_step < 1:
            raise ValueError("scale steps must be at least 1")
        if not 0 < self.target_utilization <= 1:
            raise ValueError("target_utilization must be in (0, 1]")
        if not 0 < self.scale_down_utilization <= 1:
            raise ValueError("scale_down_utilization must be in (0, 1]")
        if self.target_ttfa_p95_ms <= 0 or self.target_queue_depth_per_worker < 0:
            raise ValueError("targets must be positive")
        if self.worker_capacity < 1:
            raise ValueError("worker_capacity must be at least 1")

    @classmethod
    def from_resource(cls, spec: Mapping[str, Any]) -> "AutoscalingSpec":
        """Build from an OrpheusCluster `spec` (camelCase, CRD defaults applied or not);
        missing fields keep the dataclass defaults (which equal the CRD's)."""
        auto = dict(spec.get("autoscaling") or {})
        workers = dict(spec.get("workers") or {})
        if auto.get("targetTTFAp95Ms") is None and auto.get("targetTTFBp95Ms") is not None:
            auto["targetTTFAp95Ms"] = auto["targetTTFBp95Ms"]  # the deprecated spelling
        kwargs: dict[str, Any] = {}
        for attr, (src, key) in _RESOURCE_FIELDS.items():
            value = (workers if src == "workers" else auto).get(key)
            if value is not None:
                kwargs[attr] = type(getattr(cls, attr))(value)
        return cls(**kwargs)


# dataclass field -> (spec section, camelCase field) of the OrpheusCluster CRD
_RESOURCE_FIELDS = {
    "min_replicas": ("workers", "minReplicas"),
    "max_replicas": ("workers", "maxReplicas"),
    "target_queue_depth_per_worker": ("autoscaling", "targetQueueDepthPerWorker"),
    "target_ttfa_p95_ms": ("autoscaling", "targetTTFAp95Ms"),
    "scale_up_stabilization_s": ("autoscaling", "scaleUpStabilizationSeconds"),
    "scale_down_stabilization_s": ("autoscaling", "scaleDownStabilizationSeconds"),
    "max_scale_up_step": ("autoscaling", "maxScaleUpStep"),
    "max_scale_down_step": ("autoscaling", "maxScaleDownStep"),
    "target_utilization": ("autoscaling", "targetUtilization"),
    "scale_down_utilization": ("autoscaling", "scaleDownUtilization"),
    "tolerance": ("autoscaling", "tolerance"),
    "worker_capacity": ("autoscaling", "workerCapacity"),
}


@dataclass(frozen=True)
class Signals:
    """One observation of the service, as the gateway's `/v1/system` reports it."""

    time: float
    queue_depth: int
    inflight: int
    ready_workers: int
    capacity: int | None = None  # concurrent streams across ready workers
    ttfa_p95_ms: float | None = None
    window_s: float | None = None  # how far back the p95 looks

    def to_dict(self) -> dict[str, Any]:
        return {
            "queueDepth": self.queue_depth,
            "inflight": self.inflight,
            "readyWorkers": self.ready_workers,
            "capacity": self.capacity,
            "ttfaP95Ms": None if self.ttfa_p95_ms is None else round(self.ttfa_p95_ms, 1),
        }


@dataclass(frozen=True)
class PolicyState:
    """What the policy carries from one tick to the next (kept in `status.autoscaler`)."""

    # (time, up recommendation, down recommendation), over the longer stabilization window
    recommendations: tuple[tuple[float, int, int], ...] = ()
    calm_since: float | None = None  # both signals comfortably under target since then
    capacity_raised_at: float | None = None  # last time the ready count went up
    last_ready: int = 0
    last_change_at: float | None = None  # last time the policy changed the replica count

    def to_dict(self) -> dict[str, Any]:
        return {
            "recommendations": [list(r) for r in self.recommendations],
            "calmSince": self.calm_since,
            "capacityRaisedAt": self.capacity_raised_at,
            "lastReady": self.last_ready,
            "lastChangeAt": self.last_change_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "PolicyState":
        if not data:
            return cls()
        recs = tuple(
            (float(r[0]), int(r[1]), int(r[-1])) for r in data.get("recommendations") or ()
        )
        calm = data.get("calmSince")
        raised = data.get("capacityRaisedAt")
        changed = data.get("lastChangeAt")
        return cls(
            recommendations=recs,
            calm_since=None if calm is None else float(calm),
            capacity_raised_at=None if raised is None else float(raised),
            last_ready=int(data.get("lastReady") or 0),
            last_change_at=None if changed is None else float(changed),
        )


@dataclass(frozen=True)
class Decision:
    desired: int
    current: int
    load_desired: int
    latency_desired: int
    reason: str
    signals: Signals = field(repr=False)

    @property
    def changed(self) -> bool:
        return self.desired != self.current

    @property
    def direction(self) -> int:
        return (self.desired > self.current) - (self.desired < self.current)


def per_worker_capacity(spec: AutoscalingSpec, signals: Signals) -> float:
    if signals.capacity and signals.ready_workers > 0:
        return max(signals.capacity / signals.ready_workers, 1.0)
    return float(spec.worker_capacity)


def load_demand(spec: AutoscalingSpec, signals: Signals) -> float:
    """Workers needed (fractional) for the streams in flight plus the excess queue."""
    cap = per_worker_capacity(spec, signals)
    allowed_queue = spec.target_queue_depth_per_worker * max(signals.ready_workers, 1)
    excess_queue = max(0.0, signals.queue_depth - allowed_queue)
    return (signals.inflight + excess_queue) / (cap * spec.target_utilization)


def resting_count(spec: AutoscalingSpec, signals: Signals) -> int:
    """The fewest workers that would carry this load at `scale_down_utilization`.

    Down-scaling aims here, lower than up-scaling's target (hysteresis), and it counts the
    queue allowance of the smaller fleet: the same queue is more per worker on fewer workers,
    so shrinking never lands on a count the load signal would grow again.
    An idle service (nothing queued or in flight) rests at 0 (clamped to `min_replicas`).
    """
    if signals.inflight == 0 and signals.queue_depth == 0:
        return 0
    per_worker = per_worker_capacity(spec, signals) * min(
        spec.scale_down_utilization, spec.target_utilization)
    for n in range(1, spec.max_replicas + 1):
        excess_queue = max(0.0, signals.queue_depth - spec.target_queue_depth_per_worker * n)
        if signals.inflight + excess_queue <= n * per_worker + 1e-9:
            return n
    return spec.max_replicas


def load_desired(spec: AutoscalingSpec, signals: Signals, current: int) -> int:
    """The queue signal's count, held at `current` inside the tolerance band.

    With no worker at all, one request held at the gateway is demand for a worker."""
    need = load_demand(spec, signals)
    if current > 0 and abs(need / current - 1.0) <= spec.tolerance:
        return current
    wanted = math.ceil(need - 1e-9)
    if signals.ready_workers == 0 and (signals.queue_depth > 0 or signals.inflight > 0):
        wanted = max(wanted, 1)
    return wanted


def latency_is_fresh(state: PolicyState, signals: Signals) -> bool:
    if state.capacity_raised_at is None:
        return True
    window = signals.window_s or 0.0
    return signals.time - state.capacity_raised_at >= window


def latency_desired(spec: AutoscalingSpec, state: PolicyState, signals: Signals) -> int:
    """The latency signal's count; 0 (no opinion) unless p95 is over target past tolerance."""
    p95 = signals.ttfa_p95_ms
    if p95 is None or not latency_is_fresh(state, signals):
        return 0
    ratio = p95 / spec.target_ttfa_p95_ms
    if ratio <= 1.0 + spec.tolerance:
        return 0
    ready = max(signals.ready_workers, 1)
    return max(ready + 1, math.ceil(ready * min(ratio, spec.max_latency_ratio)))


def comfortable(spec: AutoscalingSpec, signals: Signals) -> bool:
    """Both signals comfortably under target (the precondition for scaling down)."""
    ready = max(signals.ready_workers, 1)
    queue_ok = signals.queue_depth <= spec.comfort * spec.target_queue_depth_per_worker * ready
    p95 = signals.ttfa_p95_ms
    latency_ok = p95 is None or p95 <= spec.comfort * spec.target_ttfa_p95_ms
    return queue_ok and latency_ok


def floor(spec: AutoscalingSpec) -> int:
    """The fewest workers the policy asks for: `min_replicas`, zero included (the gateway
    holds requests while no worker is ready, and those requests bring one back)."""
    return spec.min_replicas


def clamp(spec: AutoscalingSpec, n: int) -> int:
    return max(floor(spec), min(spec.max_replicas, n))


def decide(
    spec: AutoscalingSpec, state: PolicyState, signals: Signals, current: int
) -> tuple[Decision, PolicyState]:
    """One tick: `current` is the replica count already requested (ready + starting)."""
    now = signals.time
    raised_at = state.capacity_raised_at
    if signals.ready_workers > state.last_ready:
        raised_at = now
    state = replace(state, capacity_raised_at=raised_at, last_ready=signals.ready_workers)

    n_load = load_desired(spec, signals, current)
    n_latency = latency_desired(spec, state, signals)
    raw = clamp(spec, max(n_load, n_latency))
    down_raw = clamp(spec, max(resting_count(spec, signals), n_latency))

    horizon = max(spec.scale_up_stabilization_s, spec.scale_down_stabilization_s)
    recs = tuple(r for r in state.recommendations if now - r[0] < horizon)
    recs += ((now, raw, down_raw),)
    calm = comfortable(spec, signals)
    calm_since = (state.calm_since if state.calm_since is not None else now) if calm else None
    state = replace(state, recommendations=recs, calm_since=calm_since)

    bounded = clamp(spec, current)
    desired, reason = bounded, "steady"
    since_change = math.inf if state.last_change_at is None else now - state.last_change_at
    if bounded != current:
        reason = f"replicas {current} outside [{floor(spec)}, {spec.max_replicas}]"
    elif raw > current:
        up_window = [up for t, up, _ in recs if now - t < spec.scale_up_stabilization_s] or [raw]
        target = min(min(up_window), current + spec.max_scale_up_step)
        if target > current:
            desired = target
            driver = "latency" if n_latency > n_load else "queue"
            reason = _up_reason(driver, spec, signals, raw)
    elif raw < current:
        if calm_since is None:
            reason = "holding: signals not comfortably under target"
        elif now - calm_since < spec.scale_down_stabilization_s:
            reason = (
                f"holding: calm for {now - calm_since:.0f}s "
                f"of {spec.scale_down_stabilization_s:.0f}s"
            )
        elif since_change < spec.scale_down_settle_s:
            reason = f"holding: last change {since_change:.0f}s ago"
        else:
            # Only what was seen since the last change describes the fleet as it is now (the
            # per-stream speed, so the streams in flight, depends on how many share a worker).
            seen = [down_raw] + [
                down
                for t, _, down in recs
                if now - t < spec.scale_down_stabilization_s
                and (state.last_change_at is None or t > state.last_change_at)
            ]
            target = max(max(seen), current - spec.max_scale_down_step)
            if target < current:
                desired = target
                reason = (
                    f"scale down: calm for {now - calm_since:.0f}s, load needs "
                    f"{load_demand(spec, signals):.1f} workers"
                )
    if desired != current:
        state = replace(state, last_change_at=now)
    return (
        Decision(
            desired=desired,
            current=current,
            load_desired=n_load,
            latency_desired=n_latency,
            reason=reason,
            signals=signals,
        ),
        state,
    )


def _up_reason(driver: str, spec: AutoscalingSpec, signals: Signals, raw: int) -> str:
    if driver == "latency":
        return (
            f"scale up: p95 time to first audio {signals.ttfa_p95_ms:.0f}ms over target "
            f"{spec.target_ttfa_p95_ms:.0f}ms (wants {raw})"
        )
    return (
        f"scale up: {signals.inflight} in flight and {signals.queue_depth} queued on "
        f"{signals.ready_workers} ready workers (wants {raw})"
    )
