"""Prometheus metrics (`orpheus_worker_` prefix) and the recent time-to-first-audio window."""

from __future__ import annotations

import time
from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
_RTF_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0, 8.0, 16.0, 64.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class WorkerMetrics:
    """One registry per worker app (tests run several apps in one process)."""

    def __init__(self, window_s: float = 60.0):
        self.registry = CollectorRegistry()
        r = self.registry
        self.ttfa = Histogram(
            "orpheus_worker_ttfa_seconds",
            "Time to first audio: stream accepted to its first PCM chunk.",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.queue_wait = Histogram(
            "orpheus_worker_queue_wait_seconds", "Time a stream waited in the admission queue.",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.inflight = Gauge(
            "orpheus_worker_streams_inflight", "Streams being generated.", registry=r)
        self.queue_depth = Gauge(
            "orpheus_worker_queue_depth", "Streams waiting for a slot.", registry=r)
        self.tokens = Counter(
            "orpheus_worker_generated_tokens_total", "Tokens the engine generated.", registry=r)
        self.audio_seconds = Counter(
            "orpheus_worker_audio_seconds_total", "Seconds of audio produced.", registry=r)
        self.rtf = Histogram(
            "orpheus_worker_real_time_factor",
            "Real-time factor per stream: wall seconds / audio seconds (below 1 is faster).",
            buckets=_RTF_BUCKETS, registry=r)
        self.snac_batch = Histogram(
            "orpheus_worker_snac_batch_size", "Windows decoded per SNAC call.",
            buckets=_BATCH_BUCKETS, registry=r)
        self.errors = Counter(
            "orpheus_worker_errors_total", "Requests and streams ended with an error, by code.",
            ["code"], registry=r)
        self.streams = Counter(
            "orpheus_worker_streams_total", "Streams ended, by outcome (eos or an error code).",
            ["outcome"], registry=r)
        self.stray_tokens = Counter(
            "orpheus_worker_stray_tokens_total",
            "Non-audio (stray) or misplaced tokens inside audio streams.", ["kind"], registry=r)
        self.window_s = window_s
        self._recent_ttfa: deque[tuple[float, float]] = deque()

    def observe_ttfa(self, seconds: float) -> None:
        self.ttfa.observe(seconds)
        self._recent_ttfa.append((time.monotonic(), seconds * 1000.0))
        self._trim()

    def _trim(self) -> None:
        cutoff = time.monotonic() - self.window_s
        while self._recent_ttfa and self._recent_ttfa[0][0] < cutoff:
            self._recent_ttfa.popleft()

    def ttfa_percentiles(self) -> tuple[float | None, float | None]:
        """p50 and p95 of time to first audio (ms) over the last `window_s` seconds."""
        self._trim()
        values = sorted(v for _, v in self._recent_ttfa)
        if not values:
            return None, None

        def pct(q: float) -> float:
            return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]

        return pct(0.5), pct(0.95)
