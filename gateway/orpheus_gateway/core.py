"""The gateway's state and the one way every API starts a stream.

`Gateway` owns the model pools (`pools.Pool`: each model's workers, fed by discovery and
refreshed by polling each worker's `/v1/system`), the HTTP client to the workers, the key
store and limits, and the metrics. `start_stream()` is shared by the v1, OpenAI and WebSocket
APIs: validate the request, pick its pool and map its voice, count it against the caller's
limits, and open a stream on one of the pool's workers.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp

from orpheus_tts import protocol as p
from orpheus_tts import tracing
from orpheus_tts.ttfa_window import percentiles

from .auth import KeyLimiter, KeyStore, StreamSlot
from .browser import OriginPolicy
from .config import GatewayConfig
from .discovery import EndpointSliceDiscovery, StaticDiscovery, WorkerList
from .keyfile import KeyFileWatcher
from .metrics import GatewayMetrics
from .pools import Pool, PoolRouter
from .relay import CONNECTION_ERRORS, ClientGone, Upstream, UpstreamStream
from .worker_pool import BREAKER_STATE_VALUE, Worker, WorkerPool

log = logging.getLogger("orpheus_gateway")

WORKER_KEEPALIVE_S = 4.0


class StreamAborted(Exception):
    """Raised inside a response body: the connection is cut so the client sees a truncated
    transfer instead of a body that silently ends early."""


class ActiveStream:
    """A worker stream plus what the caller holds for it (its stream slot); `settle()` and
    `close()` are idempotent. It reports to its owner only through the two callbacks it is
    given."""

    __slots__ = ("upstream", "pool", "_slot", "_arrived_at", "_on_first_audio", "_on_close",
                 "first_audio_at", "_closed", "_settled", "span")

    def __init__(self, upstream: UpstreamStream, pool: Pool, slot: StreamSlot,
                 arrived_at: float, on_first_audio: Callable[[float], None],
                 on_close: Callable[[str | None], None], span: Any = tracing.NO_SPAN):
        self.upstream = upstream
        self.pool = pool  # the model pool whose worker serves it
        self._slot = slot
        self._arrived_at = arrived_at
        self._on_first_audio = on_first_audio  # seconds from arrival to first audio sent
        self._on_close = on_close  # the outcome: "eos", an error code, or None (abandoned)
        self.first_audio_at: float | None = None
        self._closed = False
        self._settled = False
        self.span = span  # `gateway.stream`, ended by close()

    @property
    def request_id(self) -> str | None:
        return self.upstream.request_id

    def lines(self) -> AsyncIterator[bytes]:
        return self.upstream.lines()

    def first_audio_sent(self) -> None:
        """Call once the first audio byte has been handed to the client."""
        if self.first_audio_at is None:
            self.first_audio_at = time.monotonic()
            ttfa_s = self.first_audio_at - self._arrived_at
            self._on_first_audio(ttfa_s)
            self.span.add_event("first_chunk_sent", {"orpheus.ttfa_ms": round(ttfa_s * 1000, 3)})

    def client_gone(self) -> None:
        """The client left: end the pending read so the relay stops (the owner closes)."""
        self.upstream.interrupt(ClientGone())

    def settle(self) -> None:
        """The client's stream is over (it has the terminal frame): give back the caller's slot,
        count the stream out and end its span, though the worker's body may still be read to
        its end for the connection's reuse. `close()` settles too."""
        if self._settled:
            return
        self._settled = True
        self._slot.release()
        outcome = self.upstream.outcome
        self._on_close(outcome)
        if outcome is not None and outcome != "eos":
            tracing.fail(self.span, outcome)
        self.span.end()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self.upstream.aclose()
        finally:
            self.settle()


class Gateway:
    def __init__(self, config: GatewayConfig,
                 discovery: StaticDiscovery | EndpointSliceDiscovery | None = None):
        """`discovery` replaces the first pool's (tests)."""
        self.config = config
        self.metrics = GatewayMetrics()
        self.keys = KeyStore(config.api_keys)
        self.key_watcher = (KeyFileWatcher(config.api_keys_file, config.env_api_keys,
                                           self.keys.replace)
                            if config.api_keys_file and self.keys.enabled else None)
        self.origins = OriginPolicy(config.allowed_origins)
        self.system_keys = KeyStore(config.system_keys)
        self.limiter = KeyLimiter(
            config.rate_limit_rpm, config.max_streams_per_key,
            on_reject=lambda limit: self.metrics.rate_limited.labels(limit).inc())
        self.created = int(time.time())
        pools = [Pool(pc, breaker_failures=config.breaker_failures,
                      breaker_reset_s=config.breaker_reset_s, ttfa_window_s=config.ttfa_window_s,
                      on_suspect=lambda _w: self._poll_now.set(), created=self.created,
                      default=pc.name == config.default_pool,
                      discovery=discovery if i == 0 else None)
                 for i, pc in enumerate(config.pool_configs())]
        self.pools = PoolRouter(pools, config.default_pool or pools[0].name)
        for pool in pools:  # every pool's series exist from the start, at 0
            self.metrics.streams_inflight.labels(pool.name)
        self.session: aiohttp.ClientSession | None = None
        self._poller: asyncio.Task | None = None
        self._poll_now = asyncio.Event()

    @property
    def pool(self) -> WorkerPool:
        """The default pool's workers (a one-pool gateway's only ones)."""
        return self.pools.default.workers

    def workers(self) -> list[tuple[Pool, Worker]]:
        return [(pool, w) for pool in self.pools for w in pool.workers]

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        internal = ({p.HEADER_INTERNAL_TOKEN: self.config.worker_token}
                    if self.config.worker_token else {})
        self.session = aiohttp.ClientSession(
            # Idle worker connections are dropped before the worker's own keep-alive timeout
            # (uvicorn: 5 s) could close one just as a request goes out on it.
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=0, use_dns_cache=True,
                                           keepalive_timeout=WORKER_KEEPALIVE_S),
            timeout=aiohttp.ClientTimeout(total=None, connect=self.config.connect_timeout_s),
            cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False, trust_env=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding"), headers=internal)
        if self.key_watcher is not None:
            self.key_watcher.start()
        for pool in self.pools:
            upstream = Upstream(pool.workers, self.session, max_attempts=self.config.max_attempts,
                                max_pending=self.config.max_pending,
                                on_failover=self.metrics.failovers.inc)
            await pool.start(upstream, lambda workers, pool=pool: self._on_workers(pool, workers))
        self._poller = asyncio.create_task(self._poll_loop(), name="worker-poller")

    async def stop(self) -> None:
        if self.key_watcher is not None:
            await self.key_watcher.stop()
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
            self._poller = None
        for pool in self.pools:
            await pool.stop()
        if self.session is not None:
            await self.session.close()

    def _on_workers(self, pool: Pool, workers: WorkerList) -> None:
        pool.workers.set_workers(workers)
        if pool.upstream is not None:
            pool.upstream.workers_changed()
        self._poll_now.set()
        log.info("pool %s workers: %s", pool.name,
                 ", ".join(w.url for w in pool.workers) or "(none)")

    # --- worker polling ----------------------------------------------------------------------
    async def _poll_loop(self) -> None:
        while True:
            workers = [w for _, w in self.workers()]
            if workers:
                await asyncio.gather(*(self.poll_worker(w) for w in workers))
            for pool in self.pools:
                if pool.upstream is not None:
                    pool.upstream.workers_changed()  # held requests look again
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
    def validate(self, body: object) -> p.TTSRequest:
        """The v1 request checked against this gateway's limits, its pool picked (`model` set
        to the pool's model when there are several) and its voice resolved in that pool."""
        req = p.parse_request(body, max_text_chars=self.config.max_text_chars,
                              max_timeout_s=self.config.max_timeout_s)
        pool = self.pools.route(req.model, req.voice)
        voice = pool.voices.resolve(req.voice, pool.known_voices())
        model = pool.model_names()[0] if len(self.pools.pools) > 1 else req.model
        return req.model_copy(update={"voice": voice, "model": model})

    def pool_of(self, req: p.TTSRequest) -> Pool:
        """The pool of a request `validate()` returned."""
        if len(self.pools.pools) == 1 or req.model is None:
            return self.pools.default
        return self.pools.route(req.model, None)

    async def start_stream(self, req: p.TTSRequest, key_id: str, api: str,
                           arrived_at: float, request_id: str | None = None) -> ActiveStream:
        """Admit and open a stream; raises `RequestError` for anything refused before audio."""
        pool = self.pool_of(req)
        assert pool.upstream is not None
        request_id = req.request_id or request_id or uuid.uuid4().hex
        span = tracing.start_span("gateway.stream", kind="server", attributes={
            tracing.REQUEST_ID: request_id, "orpheus.api": api, "orpheus.pool": pool.name})
        try:
            with tracing.span("gateway.admission", parent=span):
                slot = self.limiter.admit(key_id)
        except p.RequestError as exc:
            tracing.fail(span, exc.code)
            span.end()
            raise
        payload = req.model_dump(exclude_none=True, exclude={"model"})
        payload["request_id"] = request_id
        deadline = arrived_at + (req.timeout_s or self.config.default_timeout_s)
        series = self.metrics.stream_series(api, pool.name)
        series.requests.inc()
        try:
            with tracing.span("gateway.upstream", parent=span, kind="client") as upstream_span, \
                    tracing.use(upstream_span):  # the worker request carries its traceparent
                upstream = await pool.upstream.open(payload, request_id, deadline, key_id)
                upstream_span.set_attribute("orpheus.worker_id", upstream.worker.id)
        except BaseException as exc:
            slot.release()
            tracing.fail(span, getattr(exc, "code", type(exc).__name__))
            span.end()
            raise
        inflight, ttfa = series.inflight, series.ttfa
        inflight.inc()

        def on_first_audio(seconds: float) -> None:
            ttfa.observe(seconds)
            pool.ttfa_window.add(seconds * 1000)

        def on_close(outcome: str | None) -> None:
            inflight.dec()
            if outcome is not None and outcome != "eos":
                self.metrics.errors.labels(outcome).inc()

        return ActiveStream(upstream, pool, slot, arrived_at, on_first_audio, on_close,
                            span=span)

    def count_error(self, code: str) -> None:
        """An error returned to a client before streaming (stream errors count themselves)."""
        self.metrics.errors.labels(code).inc()

    # --- state -------------------------------------------------------------------------------
    def queue_depth(self) -> int:
        return sum(pool.queue_depth() for pool in self.pools)

    def local_inflight(self) -> int:
        return sum(pool.workers.local_inflight() for pool in self.pools)

    def known_voices(self) -> list[str]:
        return sorted({v for pool in self.pools for v in pool.known_voices()})

    def ready(self) -> bool:
        """Some pool can take a stream. A pool without workers must not take the gateway out of
        its Service (the other models would go too); each pool's readiness is in `pools`."""
        return any(pool.ready() for pool in self.pools)

    def snapshot(self) -> p.SystemSnapshot:
        pools = [pool.state() for pool in self.pools]
        capacities = [ps.capacity for ps in pools if ps.capacity]
        p50, p95 = percentiles([v for pool in self.pools for v in pool.ttfa_window.values()])
        models = sorted({m for ps in pools if ps.ready for m in ps.models})
        return p.SystemSnapshot(
            role="gateway",
            ready=self.ready(),
            queue_depth=sum(ps.queue_depth for ps in pools),
            inflight=sum(ps.inflight for ps in pools),
            capacity=sum(capacities) if capacities else None,
            ttfa_p50_ms=p50,
            ttfa_p95_ms=p95,
            window_s=self.config.ttfa_window_s,
            model=models[0] if len(models) == 1 else (", ".join(models) or None),
            voices=self.known_voices(),
            workers=[w.state().model_copy(update={"pool": pool.name})
                     for pool, w in self.workers()],
            gateway_inflight=self.local_inflight(),
            pools=pools,
        )

    def refresh_gauges(self) -> None:
        """Gauges computed from state, updated right before a scrape."""
        self.metrics.breaker_state.clear()  # workers that left take their series with them
        for pool in self.pools:
            self.metrics.queue_depth.labels(pool.name).set(pool.queue_depth())
            self.metrics.workers_ready.labels(pool.name).set(len(pool.workers.eligible()))
            self.metrics.capacity.labels(pool.name).set(pool.capacity() or 0)
            for w in pool.workers:
                self.metrics.breaker_state.labels(w.label).set(
                    BREAKER_STATE_VALUE[w.breaker.state])
