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


class SystemSnapshot(BaseModel):
    """`GET /v1/system` on a worker (`role="worker"`) or a gateway (`role="gateway"`).

    The autoscaler reads a gateway's snapshot: `queue_depth` is requests waiting anywhere
    (gateway queue plus workers' queues), `inflight` the streams being generated, and the
    time-to-first-audio percentiles cover the last `window_s` seconds. Fields a role does not
    have are left out (null).
    """

    model_config = ConfigDict(extra="ignore")

    role: Literal["worker", "gateway"]
    ready: bool
    queue_depth: int = 0
    inflight: int = 0
    capacity: int | None = None
    ttfa_p50_ms: float | None = None
    ttfa_p95_ms: float | None = None
    window_s: float | None = None
    model: str | None = None
    voices: list[str] = Field(default_factory=list)
    workers: list[WorkerState] = Field(default_factory=list)
    # worker only
    worker_id: str | None = None
    draining: bool | None = None
    engine_requests: int | None = None  # requests inside the engine (vLLM)
    decode_streams: int | None = None  # streams the SNAC decode loop is serving
    # gateway only
    gateway_inflight: int | None = None  # streams this gateway has open to workers
