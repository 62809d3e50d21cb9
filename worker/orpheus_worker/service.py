"""The worker's behaviour behind HTTP: admission, deadlines, frames, readiness and drain.

`WorkerService.open_stream()` either refuses a request (`RequestError`, before any byte is
streamed) or returns the response headers and an async iterator of NDJSON lines that always
ends with exactly one terminal frame. Whatever ends the stream (its end, an error, the deadline,
the client going away), the iterator's `finally` releases the admission ticket and closes the
synthesis, which aborts the vLLM request and drops pending decode work.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio

from orpheus_tts import protocol as P

from .admission import Admission, Ticket
from .config import WorkerConfig
from .engine import EngineError, OrpheusEngine, Synthesis
from .metrics import WorkerMetrics
from .voices import VoiceSet, load_voice_set

log = logging.getLogger(__name__)


class StreamCut(Exception):
    """The drain timeout passed while this stream was still running or queued."""


@dataclass
class OpenedStream:
    headers: dict[str, str]
    lines: AsyncIterator[bytes]


class WorkerService:
    def __init__(self, cfg: WorkerConfig, metrics: WorkerMetrics | None = None):
        self.cfg = cfg
        self.metrics = metrics or WorkerMetrics()
        self.voices: VoiceSet = load_voice_set(cfg.voices)
        self.admission = Admission(cfg.capacity, cfg.max_queue)
        self.engine: OrpheusEngine | None = None
        self.worker_id = cfg.resolved_worker_id
        self.started = time.monotonic()
        self._active: set[Synthesis] = set()

    # --- state ----------------------------------------------------------------------------
    @property
    def draining(self) -> bool:
        return self.admission.draining

    @property
    def ready(self) -> bool:
        return self.engine is not None and self.engine.healthy and not self.draining

    def start_drain(self) -> None:
        self.admission.draining = True

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no stream is inflight or queued; False if `timeout_s` ran out first."""
        deadline = time.monotonic() + timeout_s
        while self.admission.inflight or self.admission.queue_depth:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    def cut_streams(self) -> int:
        """End every remaining stream with an explicit `draining` error frame."""
        cut = StreamCut("The worker shut down before this stream finished; retry elsewhere.")
        for synthesis in list(self._active):
            synthesis.interrupt(cut)
        return len(self._active) + self.admission.fail_queued(cut)

    def _update_gauges(self) -> None:
        self.metrics.inflight.set(self.admission.inflight)
        self.metrics.queue_depth.set(self.admission.queue_depth)

    def snapshot(self) -> P.SystemSnapshot:
        p50, p95 = self.metrics.ttfa_percentiles()
        return P.SystemSnapshot(
            role="worker",
            ready=self.ready,
            queue_depth=self.admission.queue_depth,
            inflight=self.admission.inflight,
            capacity=self.admission.capacity,
            ttfa_p50_ms=p50,
            ttfa_p95_ms=p95,
            window_s=self.metrics.window_s,
            model=self.cfg.model,
            voices=list(self.voices.voices),
            worker_id=self.worker_id,
            draining=self.draining,
            engine_requests=self.engine.engine_requests if self.engine else 0,
            decode_streams=self.engine.decode_loop.active if self.engine else 0,
        )

    def voices_body(self) -> dict[str, Any]:
        return {
            "model": self.cfg.model,
            "voice_set": self.voices.name,
            "voices": list(self.voices.voices),
            "aliases": dict(self.voices.aliases),
        }

    # --- streams --------------------------------------------------------------------------
    def open_stream(self, raw_body: bytes, header_request_id: str | None = None) -> OpenedStream:
        """Validate and admit a request, or raise `RequestError` (nothing streamed yet)."""
        t0 = time.monotonic()
        req = P.parse_request_bytes(raw_body, max_text_chars=self.cfg.max_text_chars,
                                    max_timeout_s=self.cfg.max_timeout_s)
        voice = self.voices.resolve(req.voice)
        if self.engine is None:
            raise P.RequestError(P.ErrorCode.OVERLOADED, "Worker is still loading its model.",
                                 retry_after_s=5)
        request_id = req.request_id or header_request_id or uuid.uuid4().hex
        ticket = self.admission.admit()
        self._update_gauges()
        headers = {
            **P.load_headers(self.admission.queue_depth, self.admission.inflight),
            P.HEADER_WORKER_ID: self.worker_id,
            P.HEADER_REQUEST_ID: request_id,
        }
        timeout_s = min(req.timeout_s or self.cfg.default_timeout_s, self.cfg.max_timeout_s)
        lines = self._lines(req, voice, ticket, request_id, t0, t0 + timeout_s)
        return OpenedStream(headers, lines)

    def _metrics_line(self, queue_wait_s: float | None, ttfa_s: float | None) -> bytes:
        return P.encode_frame(P.MetricsFrame(
            worker_id=self.worker_id,
            queue_wait_ms=None if queue_wait_s is None else round(queue_wait_s * 1000, 3),
            ttfa_ms=None if ttfa_s is None else round(ttfa_s * 1000, 3),
            queue_depth=self.admission.queue_depth,
            inflight=self.admission.inflight,
        ))

    def _error_line(self, code: P.ErrorCode, message: str) -> bytes:
        self.metrics.errors.labels(code=code).inc()
        self.metrics.streams.labels(outcome=code).inc()
        return P.error_line(code, message)

    async def _lines(self, req: P.TTSRequest, voice: str | None, ticket: Ticket,
                     request_id: str, t0: float, deadline: float) -> AsyncIterator[bytes]:
        assert self.engine is not None
        engine = self.engine
        synthesis: Synthesis | None = None
        seq = samples = 0
        queue_wait_s: float | None = None
        ttfa_s: float | None = None
        sent_metrics = False
        try:
            try:
                async with asyncio.timeout(deadline - time.monotonic()):
                    queue_wait_s = await ticket.wait()
                self.metrics.queue_wait.observe(queue_wait_s)
                self._update_gauges()
                synthesis = engine.synthesis(req, voice, request_id)
                self._active.add(synthesis)
                while True:
                    # One deadline for the stream, armed around each read (a generator cannot
                    # hold a timeout across its yields); no task per chunk.
                    async with asyncio.timeout(deadline - time.monotonic()):
                        pcm = await synthesis.read()
                    if pcm is None:
                        break
                    if ttfa_s is None:
                        ttfa_s = time.monotonic() - t0
                        self.metrics.observe_ttfa(ttfa_s)
                    yield P.chunk_line(seq, pcm)
                    seq += 1
                    samples += len(pcm) // P.SAMPLE_WIDTH
                    if not sent_metrics:
                        sent_metrics = True
                        yield self._metrics_line(queue_wait_s, ttfa_s)
            except (TimeoutError, asyncio.TimeoutError):
                if not sent_metrics:
                    yield self._metrics_line(queue_wait_s, ttfa_s)
                yield self._error_line(
                    P.ErrorCode.DEADLINE_EXCEEDED,
                    f"Deadline of {deadline - t0:.1f} s exceeded after {samples} samples.")
                return
            except StreamCut as exc:
                if not sent_metrics:
                    yield self._metrics_line(queue_wait_s, ttfa_s)
                yield self._error_line(P.ErrorCode.DRAINING, str(exc))
                return
            except EngineError as exc:
                if not sent_metrics:
                    yield self._metrics_line(queue_wait_s, ttfa_s)
                yield self._error_line(P.ErrorCode.ENGINE_ERROR, str(exc))
                return
            except Exception as exc:  # noqa: BLE001 - a stream always ends with a terminal frame
                log.exception("stream %s failed", request_id)
                if not sent_metrics:
                    yield self._metrics_line(queue_wait_s, ttfa_s)
                yield self._error_line(P.ErrorCode.INTERNAL, f"internal error: {exc}")
                return
            if not sent_metrics:
                yield self._metrics_line(queue_wait_s, ttfa_s)
            total_s = time.monotonic() - t0
            audio_s = P.pcm_seconds(samples)
            rtf = total_s / audio_s if audio_s > 0 else None
            stats = synthesis.stats
            self.metrics.tokens.inc(stats.tokens)
            self.metrics.audio_seconds.inc(audio_s)
            if rtf is not None:
                self.metrics.rtf.observe(rtf)
            if stats.stray:
                self.metrics.stray_tokens.labels(kind="stray").inc(stats.stray)
            if stats.misplaced:
                self.metrics.stray_tokens.labels(kind="misplaced").inc(stats.misplaced)
            self.metrics.streams.labels(outcome="eos").inc()
            yield P.encode_frame(P.EosFrame(
                chunks=seq, samples=samples, audio_s=round(audio_s, 6),
                ttfa_ms=None if ttfa_s is None else round(ttfa_s * 1000, 3),
                total_ms=round(total_s * 1000, 3),
                rtf=None if rtf is None else round(rtf, 4),
                tokens=stats.tokens, frames=stats.frames, segments=stats.segments,
                stray_tokens=stats.stray, misplaced_tokens=stats.misplaced,
            ))
        finally:
            # Runs on normal end, errors and cancellation (client gone): shield the cleanup.
            with anyio.CancelScope(shield=True):
                if synthesis is not None:
                    self._active.discard(synthesis)
                    await synthesis.close()
                ticket.release()
                self._update_gauges()
