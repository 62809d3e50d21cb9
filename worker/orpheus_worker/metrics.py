"""Prometheus metrics (`orpheus_worker_` prefix) and the recent time-to-first-audio window."""

from __future__ import annotations

from functools import partial

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from orpheus_tts.ttfa_window import TtfaWindow

_LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
_RTF_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0, 8.0, 16.0, 64.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class WorkerMetrics:
    """One registry per worker app (tests run several apps in one process)."""

    def __init__(self, window_s: float = 60.0):
        self.registry = CollectorRegistry()
        histogram, gauge, counter = (partial(kind, registry=self.registry)
                                     for kind in (Histogram, Gauge, Counter))
        self.ttfa = histogram("orpheus_worker_ttfa_seconds", "Time to first audio: stream "
                              "accepted to its first PCM chunk.", buckets=_LATENCY_BUCKETS)
        self.queue_wait = histogram("orpheus_worker_queue_wait_seconds", "Time a stream waited "
                                    "in the admission queue.", buckets=_LATENCY_BUCKETS)
        self.inflight = gauge("orpheus_worker_streams_inflight", "Streams being generated.")
        self.queue_depth = gauge("orpheus_worker_queue_depth", "Streams waiting for a slot.")
        self.tokens = counter("orpheus_worker_generated_tokens_total",
                              "Tokens the engine generated.")
        self.audio_seconds = counter("orpheus_worker_audio_seconds_total",
                                     "Seconds of audio produced.")
        self.rtf = histogram("orpheus_worker_real_time_factor", "Real-time factor per stream: "
                             "wall seconds / audio seconds (below 1 is faster).",
                             buckets=_RTF_BUCKETS)
        self.snac_batch = histogram("orpheus_worker_snac_batch_size",
                                    "Windows decoded per SNAC call.", buckets=_BATCH_BUCKETS)
        self.errors = counter("orpheus_worker_errors_total",
                              "Requests and streams ended with an error, by code.", ["code"])
        self.streams = counter("orpheus_worker_streams_total",
                               "Streams ended, by outcome (eos or an error code).", ["outcome"])
        self.stray_tokens = counter("orpheus_worker_stray_tokens_total", "Non-audio (stray) or "
                                    "misplaced tokens inside audio streams.", ["kind"])
        self.window = TtfaWindow(window_s)

    @property
    def window_s(self) -> float:
        return self.window.window_s

    def observe_ttfa(self, seconds: float) -> None:
        self.ttfa.observe(seconds)
        self.window.add(seconds * 1000.0)

    def ttfa_percentiles(self) -> tuple[float | None, float | None]:
        """p50 and p95 of time to first audio (ms) over the last `window_s` seconds."""
        return self.window.percentiles()
