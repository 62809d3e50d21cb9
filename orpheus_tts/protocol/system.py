"""`GET /v1/system`: a worker's or a gateway's snapshot (the autoscaler's input)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class WorkerState(BaseModel):
    """One worker as the gateway sees it."""

    model_config = ConfigDict(extra="ignore")

    id: str
    url: str
    ready: bool
    inflight: int = 0
    queue_depth: int = 0
    capacity: int | None = None
    breaker: Literal["closed", "open", "half_open"] = "closed"
    pool: str | None = None  # the gateway's model pool the worker belongs to


class _Load(BaseModel):
    """What a worker, a pool and a whole gateway report alike: readiness, load and time to
    first audio."""

    model_config = ConfigDict(extra="ignore")

    ready: bool
    queue_depth: int = 0
    inflight: int = 0
    capacity: int | None = None
    ttfa_p50_ms: float | None = None
    ttfa_p95_ms: float | None = None
    voices: list[str] = Field(default_factory=list)


class PoolState(_Load):
    """One model pool of a gateway: its own queue, workers and time to first audio, so each
    pool is scaled on its own signals."""

    name: str
    models: list[str] = Field(default_factory=list)  # names `model` may take for this pool
    default: bool = False  # requests naming neither a model nor a voice go here
    workers: int = 0
    workers_ready: int = 0


class SystemSnapshot(_Load):
    """`GET /v1/system` on a worker (`role="worker"`) or a gateway (`role="gateway"`).

    The autoscaler reads a gateway's snapshot: `queue_depth` is requests waiting anywhere
    (gateway queue plus workers' queues), `inflight` the streams being generated, and the
    time-to-first-audio percentiles cover the last `window_s` seconds. Fields a role does not
    have are left out (null).
    """

    role: Literal["worker", "gateway"]
    window_s: float | None = None
    model: str | None = None
    workers: list[WorkerState] = Field(default_factory=list)
    # worker only
    worker_id: str | None = None
    draining: bool | None = None
    engine_requests: int | None = None  # requests inside the engine (vLLM)
    decode_streams: int | None = None  # streams the SNAC decode loop is serving
    # gateway only
    gateway_inflight: int | None = None  # streams this gateway has open to workers
    pools: list[PoolState] = Field(default_factory=list)  # the totals above, per model pool
