"""The gateway's state and the one way every API starts a stream.

`Gateway` owns the worker pool (fed by discovery, refreshed by polling each worker's
`/v1/system`), the HTTP client to the workers, the key store and limits, the voice map and
the metrics. `start_stream()` is shared by the v1, OpenAI and WebSocket APIs: validate the
request, map the voice, count it against the caller's limits, and open a worker stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable

import aiohttp

from orpheus_tts import protocol as p

from .auth import KeyLimiter, KeyStore, StreamSlot
from .config import GatewayConfig
from .discovery import EndpointSliceDiscovery, StaticDiscovery, WorkerList, discovery_for
from .metrics import GatewayMetrics, TtfaWindow
from .relay import CONNECTION_ERRORS, ClientGone, Upstream, UpstreamStream
from .worker_pool import BREAKER_STATE_VALUE, Worker, WorkerPool
from .voice_map import VoiceMap

log = logging.getLogger("orpheus_gateway")

WORKER_KEEPALIVE_S = 4.0


class StreamAborted(Exception):
    """Raised inside a response body: the connection is cut so the client sees a truncated
    transfer instead of a body that silently ends early."""


class ActiveStream:
    """A worker stream plus what the caller holds for it (its stream slot); `close()` is
    idempotent. It reports to its owner only through the two callbacks it is given."""

    __slots__ = ("upstream", "_slot", "_arrived_at", "_on_first_audio", "_on_close",
                 "first_audio_at", "_closed")

    def __init__(self, upstream: UpstreamStream, slot: StreamSlot, arrived_at: float,
                 on_first_audio: Callable[[float], None],
                 on_close: Callable[[str | None], None]):
        self.upstream = upstream
        self._slot = slot
        self._arrived_at = arrived_at
        self._on_first_audio = on_first_audio  # seconds from arrival to first audio sent
        self._on_close = on_close  # the outcome: "eos", an error code, or None (abandoned)
        self.first_audio_at: float | None = None
        self._closed = False

    @property
    def request_id(self) -> str | None:
        return self.upstream.request_id

    def lines(self) -> AsyncIterator[bytes]:
        return self.upstream.lines()

    def first_audio_sent(self) -> None:
        """Call once the first audio byte has been handed to the client."""
        if self.first_audio_at is None:
            self.first_audio_at = time.monotonic()
            self._on_first_audio(self.first_audio_at - self._arrived_at)

    def client_gone(self) -> None:
        """The client left: end the pending read so the relay stops (the owner closes)."""
        self.upstream.interrupt(ClientGone())

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self.upstream.aclose()
        finally:
            self._slot.release()
            self._on_close(self.upstream.outcome)


class Gateway:
    def __init__(self, config: GatewayConfig,
                 discovery: StaticDiscovery | EndpointSliceDiscovery | None = None):
        self.config = config
        self.metrics = GatewayMetrics()
        self.keys = KeyStore(config.api_keys)
        self.limiter = KeyLimiter(
            config.rate_limit_rpm, config.max_streams_per_key,
            on_reject=lambda limit: self.metrics.rate_limited.labels(limit).inc())
        self.voices = VoiceMap(config.voice_aliases, config.default_voice)
        self.pool = WorkerPool(config.breaker_failures, config.breaker_reset_s,
                               on_suspect=lambda _w: self._poll_now.set())
        self.ttfa_window = TtfaWindow(config.ttfa_window_s)
        self.discovery = discovery or discovery_for(config.workers, config.discover)
        self.session: aiohttp.ClientSession | None = None
        self.upstream: Upstream | None = None
        self._poller: asyncio.Task | None = None
        self._poll_now = asyncio.Event()
        self._discovered = False

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        self.session = aiohttp.ClientSession(
            # Idle worker connections are dropped before the worker's own keep-alive timeout
            # (uvicorn: 5 s) could close one just as a request goes out on it.
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=0, use_dns_cache=True,
                                           keepalive_timeout=WORKER_KEEPALIVE_S),
            timeout=aiohttp.ClientTimeout(total=None, connect=self.config.connect_timeout_s),
            cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False, trust_env=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding"))
        self.upstream = Upstream(self.pool, self.session, max_attempts=self.config.max_attempts,
                                 on_failover=self.metrics.failovers.inc)
        await self.discovery.start(self._on_workers)
        self._poller = asyncio.create_task(self._poll_loop(), name="worker-poller")

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
            self._poller = None
        await self.discovery.stop()
        if self.session is not None:
            await self.session.close()

    def _on_workers(self, workers: WorkerList) -> None:
        self._discovered = True
        before = {w.url for w in self.pool}
        self.pool.set_workers(workers)
        for url in before - {w.url for w in self.pool}:
            try:
                self.metrics.breaker_state.remove(url)
            except KeyError:
                pass
        self._poll_now.set()
        log.info("workers: %s", ", ".join(w.url for w in self.pool) or "(none)")

    # --- worker polling ----------------------------------------------------------------------
    async def _poll_loop(self) -> None:
        while True:
            workers = list(self.pool)
            if workers:
                await asyncio.gather(*(self.poll_worker(w) for w in workers))
            self._poll_now.clear()
            try:
                async with asyncio.timeout(self.config.poll_interval_s):
                    await self._poll_now.wait()
            except TimeoutError:
                pass

    async def poll_worker(self, worker: Worker) -> None:
        assert self.session is not None
        try:
            async with self.session.get(
                    worker.url + p.SYSTEM_PATH,
                    timeout=aiohttp.ClientTimeout(total=self.config.poll_timeout_s)) as resp:
                raw = await resp.read()
            snap = p.SystemSnapshot.model_validate_json(raw) if resp.status == 200 else None
        except (*CONNECTION_ERRORS, TimeoutError, ValueError) as exc:
            log.debug("poll of %s failed: %s", worker.url, type(exc).__name__)
            snap = None
        worker.polled(snap)

    # --- what the APIs share -----------------------------------------------------------------
    def known_voices(self) -> list[str]:
        voices: set[str] = set()
        for w in self.pool:
            voices.update(w.voices)
        return sorted(voices)

    def validate(self, body: object) -> p.TTSRequest:
        """The v1 request checked against this gateway's limits, its voice resolved."""
        req = p.parse_request(body, max_text_chars=self.config.max_text_chars,
                              max_timeout_s=self.config.max_timeout_s)
        voice = self.voices.resolve(req.voice, self.known_voices())
        return req.model_copy(update={"voice": voice})

    async def start_stream(self, req: p.TTSRequest, key_id: str, api: str,
                           arrived_at: float, request_id: str | None = None) -> ActiveStream:
        """Admit and open a stream; raises `RequestError` for anything refused before audio."""
        assert self.upstream is not None
        request_id = req.request_id or request_id or uuid.uuid4().hex
        slot = self.limiter.admit(key_id)
        payload = req.model_dump(exclude_none=True)
        payload["request_id"] = request_id
        deadline = arrived_at + (req.timeout_s or self.config.default_timeout_s)
        self.metrics.requests.labels(api).inc()
        try:
            upstream = await self.upstream.open(payload, request_id, deadline)
        except BaseException:
            slot.release()
            raise
        self.metrics.streams_inflight.inc()
        ttfa = self.metrics.ttfa.labels(api)

        def on_first_audio(seconds: float) -> None:
            ttfa.observe(seconds)
            self.ttfa_window.add(seconds * 1000)

        return ActiveStream(upstream, slot, arrived_at, on_first_audio, self._stream_closed)

    def _stream_closed(self, outcome: str | None) -> None:
        self.metrics.streams_inflight.dec()
        if outcome is not None and outcome != "eos":
            self.metrics.errors.labels(outcome).inc()

    def count_error(self, code: str) -> None:
        """An error returned to a client before streaming (stream errors count themselves)."""
        self.metrics.errors.labels(code).inc()

    # --- state -------------------------------------------------------------------------------
    def queue_depth(self) -> int:
        own = self.upstream.waiting if self.upstream is not None else 0
        return own + sum(w.hint_queue_depth for w in self.pool if w.reachable)

    def ready(self) -> bool:
        return bool(self.pool.eligible())

    def snapshot(self) -> p.SystemSnapshot:
        workers = list(self.pool)
        usable = [w for w in workers if w.ready and w.reachable]
        capacities = [w.capacity for w in usable if w.capacity]
        p50, p95 = self.ttfa_window.percentiles()
        models = sorted({w.model for w in usable if w.model})
        return p.SystemSnapshot(
            role="gateway",
            ready=self.ready(),
            queue_depth=self.queue_depth(),
            inflight=sum(max(w.local_inflight, w.hint_inflight) for w in usable),
            capacity=sum(capacities) if capacities else None,
            ttfa_p50_ms=p50,
            ttfa_p95_ms=p95,
            window_s=self.ttfa_window.window_s,
            model=models[0] if len(models) == 1 else (", ".join(models) or None),
            voices=self.known_voices(),
            workers=[w.state() for w in workers],
            gateway_inflight=self.pool.local_inflight(),
        )

    def refresh_gauges(self) -> None:
        """Gauges computed from state, updated right before a scrape."""
        self.metrics.queue_depth.set(self.queue_depth())
        self.metrics.workers_ready.set(len(self.pool.eligible()))
        self.metrics.capacity.set(sum(w.capacity or 0 for w in self.pool
                                      if w.ready and w.reachable))
        for w in self.pool:
            self.metrics.breaker_state.labels(w.url).set(BREAKER_STATE_VALUE[w.breaker.state])
