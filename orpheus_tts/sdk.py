"""`OrpheusTTS`: stream speech from one gateway or a set of gateways/workers over the v1 contract.

    async with OrpheusTTS(["http://gw:8000"], api_key="KEY") as tts:
        async for pcm in tts.stream("Hello.", voice="tara", timeout_s=20):
            ...  # raw PCM s16le, 24 kHz, mono

Per request: pick the best endpoint (`orpheus_tts.routing`), stream from it, and if no audio
arrived within `hedge_ttfb_ms` start one backup on the next-best endpoint; the first to
deliver audio wins and the other is closed. Before any audio, a failing endpoint (connection
error, 5xx/429, retryable `error` frame, broken stream) is replaced by the next one, up to
`max_attempts`; once audio has been yielded nothing is retried. See `docs/sdk.md`.

Ownership: each `stream()` owns its HTTP attempts and closes every one of them on every exit
path (the three laws: one owner, idempotent cleanup, explicit completion — a stream without
a terminal frame raises `IncompleteStreamError`).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx

from orpheus_tts import protocol as p
from orpheus_tts import tracing
from orpheus_tts.errors import (
    DeadlineExceededError,
    HTTPStatusError,
    IncompleteStreamError,
    StreamError,
)
from orpheus_tts.routing import EndpointSnapshot, Router
from orpheus_tts.session import Session

__all__ = ["OrpheusTTS", "AudioStream", "StreamInfo"]

_USER_AGENT = "orpheus-tts-sdk/0.1"
_DRAIN_TIMEOUT_S = 1.0


if sys.version_info >= (3, 11):
    async def _within(deadline: float, aw: Any) -> Any:
        """Await `aw` until `deadline` (loop time): a timer, not a task per call."""
        async with asyncio.timeout_at(deadline):
            return await aw
else:  # pragma: no cover - Python 3.10
    async def _within(deadline: float, aw: Any) -> Any:
        return await asyncio.wait_for(aw, max(0.0, deadline - asyncio.get_running_loop().time()))


@dataclass
class StreamInfo:
    """What happened to one `stream()` call; filled in as it runs."""

    endpoint: str | None = None  # base URL whose audio was returned
    request_id: str | None = None
    ttfa_ms: float | None = None  # client-measured, from the call to the first audio
    eos: p.EosFrame | None = None
    attempts: list[str] = field(default_factory=list)  # endpoints tried, in order
    hedged: bool = False  # a backup request was started


class _Attempt:
    """One HTTP stream to one endpoint. Closed exactly once by the stream that started it."""

    def __init__(self, tts: OrpheusTTS, url: str, body: dict[str, Any]):
        self.tts = tts
        self.url = url
        self.body = body
        self.started = time.monotonic()
        self.response: httpx.Response | None = None
        self.task: asyncio.Task[p.Frame] | None = None
        self._lines: AsyncIterator[str] | None = None
        self._terminal_seen = False
        self._verdict_given = False
        self._closed = False

    @property
    def request_id(self) -> str | None:
        return self.response.headers.get(p.HEADER_REQUEST_ID) if self.response else None

    async def until_audio(self) -> p.Frame:
        """Open the stream and read until the first chunk (or an `eos` with no audio)."""
        client = self.tts._client
        assert client is not None
        request = client.build_request("POST", self.url + p.STREAM_PATH, json=self.body,
                                       headers=tracing.inject({}))
        self.response = response = await client.send(request, stream=True)
        self._note_hints(response.headers)
        if not response.is_success:
            await response.aread()
            raise HTTPStatusError(response, endpoint=self.url)
        while True:
            frame = await self.next_frame()
            if isinstance(frame, p.ChunkFrame):
                self.tts._router.record_ttfa(self.url, (time.monotonic() - self.started) * 1000)
                return frame
            if isinstance(frame, p.EosFrame):
                return frame
            if isinstance(frame, p.ErrorFrame):
                raise self.error_from(frame)
            if isinstance(frame, p.MetricsFrame):
                self.note_metrics(frame)

    async def next_frame(self) -> p.Frame:
        """The next known frame. Raises `IncompleteStreamError` at an end without a terminal."""
        assert self.response is not None
        if self._lines is None:
            self._lines = self.response.aiter_lines()
        while True:
            try:
                line = await self._lines.__anext__()
            except StopAsyncIteration:
                raise IncompleteStreamError(
                    f"stream from {self.url} ended without a terminal frame",
                    endpoint=self.url, request=self.response.request,
                ) from None
            try:
                frame = p.decode_frame(line)
            except p.FrameDecodeError as exc:
                raise IncompleteStreamError(
                    f"malformed frame from {self.url}: {exc}",
                    endpoint=self.url, request=self.response.request,
                ) from exc
            if frame is None:
                continue
            if frame.type in p.TERMINAL_TYPES:
                self._terminal_seen = True
            return frame

    async def drain(self) -> None:
        """After the terminal frame: read to the end of the body so the connection is reused."""
        if self._lines is None:
            return
        async for _ in self._lines:
            pass  # nothing may follow a terminal frame; ignore it if something does

    def note_metrics(self, frame: p.MetricsFrame) -> None:
        self.tts._router.record_hints(self.url, frame.queue_depth, frame.inflight)

    def _note_hints(self, headers: httpx.Headers) -> None:
        hints = p.LoadHints.from_headers(headers)
        self.tts._router.record_hints(self.url, hints.queue_depth, hints.inflight)

    def error_from(self, frame: p.ErrorFrame) -> StreamError:
        if frame.code == p.ErrorCode.DEADLINE_EXCEEDED:
            return DeadlineExceededError(frame.message, endpoint=self.url,
                                         request_id=self.request_id)
        return StreamError(frame.code, frame.message, frame.retryable, endpoint=self.url,
                           request_id=self.request_id)

    # --- verdicts for the circuit breaker (exactly one per attempt) ---------------------------
    def succeeded(self) -> None:
        if not self._verdict_given:
            self._verdict_given = True
            self.tts._router.record_success(self.url)

    def failed(self) -> None:
        if not self._verdict_given:
            self._verdict_given = True
            self.tts._router.record_failure(self.url)

    def judge(self, exc: BaseException) -> bool:
        """Give the breaker its verdict for `exc`; True if another endpoint may be tried."""
        if isinstance(exc, (HTTPStatusError, StreamError)):
            code, retryable = exc.error_code, exc.error_code.retryable
            if isinstance(exc, StreamError):
                retryable = exc.retryable  # the frame's own word (it defaults to the code's)
        elif isinstance(exc, httpx.TransportError):  # includes a stream cut short
            code = p.ErrorCode.UPSTREAM_LOST
            retryable = code.retryable
        else:
            return False
        if code.endpoint_fault:
            self.failed()
        return retryable

    async def aclose(self) -> None:
        """Stop the attempt and release its connection (closed if the body is unread)."""
        if self._closed:
            return
        self._closed = True
        task = self.task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self.response is not None:
            await self.response.aclose()
        if not self._verdict_given:
            self._verdict_given = True
            self.tts._router.release(self.url)
        self.tts._attempts.discard(self)


class AudioStream:
    """The async iterator of PCM chunks `OrpheusTTS.stream()` returns.

    Iterate it with `async for`; `info` tells which endpoint answered, the time to first
    audio and the final `eos` frame. Leaving the loop early is fine (the stream is closed
    when the iterator is dropped); `await s.aclose()` or `async with` closes it at once.
    """

    def __init__(self, gen: AsyncIterator[bytes], info: StreamInfo):
        self._gen = gen
        self.info = info

    def __aiter__(self) -> AudioStream:
        return self

    async def __anext__(self) -> bytes:
        return await self._gen.__anext__()

    async def aclose(self) -> None:
        await self._gen.aclose()  # type: ignore[attr-defined]

    async def __aenter__(self) -> AudioStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class OrpheusTTS:
    """Client for one or more v1 endpoints (gateways or workers). One instance per event loop.

    Args:
        base_urls: one URL or a list; each is tried as `<url>/v1/tts/stream`.
        api_key: sent as `Authorization: Bearer <key>`.
        hedge_ttfb_ms: start a backup request on the next-best endpoint if no audio arrived
            within this many milliseconds; None or 0 disables hedging.
        timeout_s: default per-request deadline (sent to the server and enforced here);
            None leaves it to the server's default.
        max_attempts: most endpoints tried for one request (hedges and fail-overs included).
        failure_threshold / cooldown_s: the circuit breaker (see `orpheus_tts.routing`).
        connect_timeout_s / read_timeout_s: httpx timeouts (read: the longest silence allowed
            between bytes of a stream).
    """

    def __init__(
        self,
        base_urls: str | Iterable[str],
        api_key: str | None = None,
        hedge_ttfb_ms: float | None = 400,
        *,
        timeout_s: float | None = None,
        max_attempts: int = 3,
        failure_threshold: int = 3,
        cooldown_s: float = 5.0,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float | None = 60.0,
        queue_cost_ms: float = 250.0,
        inflight_cost_ms: float = 25.0,
        max_connections: int = 100,
        headers: dict[str, str] | None = None,
    ):
        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        self.base_urls = [u.rstrip("/") for u in urls]
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._router = Router(
            self.base_urls,
            failure_threshold=failure_threshold,
            cooldown_s=cooldown_s,
            queue_cost_ms=queue_cost_ms,
            inflight_cost_ms=inflight_cost_ms,
        )
        self.hedge_ttfb_ms = hedge_ttfb_ms or None
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self._headers = {"User-Agent": _USER_AGENT, "Accept": p.NDJSON, **(headers or {})}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._timeout = httpx.Timeout(
            connect=connect_timeout_s, read=read_timeout_s, write=30.0, pool=connect_timeout_s
        )
        self._limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._attempts: set[_Attempt] = set()
        self._sessions: set[Session] = set()

    # --- lifecycle ---------------------------------------------------------------------------
    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        """Create the HTTP client on first use; refuse any other event loop afterwards."""
        loop = asyncio.get_running_loop()
        if self._closed:
            raise RuntimeError("OrpheusTTS is closed; create a new instance")
        if self._loop is None:
            self._loop = loop
            self._client = httpx.AsyncClient(
                headers=self._headers, timeout=self._timeout, limits=self._limits
            )
        elif self._loop is not loop:
            raise RuntimeError(
                "This OrpheusTTS instance is bound to the event loop that first used it; "
                "create one OrpheusTTS per event loop (e.g. per thread)"
            )
        return loop

    async def close(self) -> None:
        """Close every open stream and the HTTP connections. Safe to call more than once."""
        self._closed = True
        if self._client is None:
            return
        if asyncio.get_running_loop() is not self._loop:
            raise RuntimeError(
                "OrpheusTTS.close() must run on the event loop that used the instance"
            )
        for attempt in list(self._attempts):
            await attempt.aclose()
        for session in list(self._sessions):
            await session.aclose()
        client, self._client = self._client, None
        await client.aclose()

    async def __aenter__(self) -> OrpheusTTS:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def endpoints(self) -> list[EndpointSnapshot]:
        """Each endpoint's score and breaker state, in `base_urls` order (lowest score wins)."""
        return self._router.snapshot()

    # --- streaming ---------------------------------------------------------------------------
    def stream(
        self, text: str, voice: str | None = None, *, timeout_s: float | None = None,
        **params: Any,
    ) -> AudioStream:
        """Speak `text`; iterate the result with `async for` to get PCM chunks as they arrive.

        `params` go to the server as they are (sampling parameters, `request_id`, ...); an
        unknown one is refused by the server with a 400 naming it. `timeout_s` (default: the
        instance's) is the whole request's deadline: sent to the server and enforced here
        (`DeadlineExceededError`, an `asyncio.TimeoutError`).
        """
        timeout = self.timeout_s if timeout_s is None else timeout_s
        if timeout is not None and not timeout > 0:
            raise ValueError("timeout_s must be a positive number of seconds")
        body: dict[str, Any] = {"text": text}
        if voice is not None:
            body["voice"] = voice
        if timeout is not None:
            body["timeout_s"] = timeout
        body.update(params)
        info = StreamInfo()
        return AudioStream(self._run(body, timeout, info), info)

    def session(self, voice: str | None = None, **params: Any) -> Session:
        """A WebSocket session with the best endpoint: several utterances on one socket, text
        streamed in as it is written (`Session.open`), `interrupt()`. Use it with `async with`;
        `close()` also closes it. `voice` and `params` are its utterances' defaults."""
        self._bind_loop()
        url = self._router.pick_first().url

        def closed() -> None:
            self._sessions.discard(session)
            self._router.release(url)

        session = Session(url, self._headers, voice=voice, on_close=closed, **params)
        self._sessions.add(session)
        return session

    async def stream_text(self, text: AsyncIterable[str], voice: str | None = None,
                          **params: Any) -> AsyncIterator[bytes]:
        """Speak text while it is being written (an LLM's tokens, in pieces): PCM chunks as
        `stream()` yields them. The server cuts the text at sentence and clause boundaries
        and starts speaking before the text is complete; see `orpheus_tts.session`."""
        async with self.session() as session:
            async for pcm in session.stream_text(text, voice, **params):
                yield pcm

    async def synthesize(
        self, text: str, voice: str | None = None, **params: Any
    ) -> bytes:
        """The whole utterance as one PCM buffer (s16le, 24 kHz, mono)."""
        chunks = [chunk async for chunk in self.stream(text, voice, **params)]
        return b"".join(chunks)

    async def _run(
        self, body: dict[str, Any], timeout_s: float | None, info: StreamInfo
    ) -> AsyncIterator[bytes]:
        loop = self._bind_loop()
        started = loop.time()
        deadline = started + timeout_s if timeout_s is not None else None
        span = tracing.start_span("sdk.stream", kind="client",
                                  attributes={tracing.REQUEST_ID: body.get("request_id")})
        try:
            with tracing.use(span):  # each attempt's request carries this span's traceparent
                attempt, first = await self._race(body, deadline, info)
        except BaseException as exc:
            tracing.fail(span, getattr(exc, "code", None) or type(exc).__name__)
            span.end()
            raise
        try:
            info.endpoint = attempt.url
            info.request_id = attempt.request_id
            span.set_attribute(tracing.REQUEST_ID, attempt.request_id or "")
            span.set_attribute("orpheus.endpoint", attempt.url)
            frame: p.Frame = first
            expected_seq = 0
            while True:
                if isinstance(frame, p.ChunkFrame):
                    if frame.seq != expected_seq:
                        raise IncompleteStreamError(
                            f"chunk {expected_seq} missing from {attempt.url} "
                            f"(got seq {frame.seq})", endpoint=attempt.url,
                        )
                    expected_seq += 1
                    if info.ttfa_ms is None:
                        info.ttfa_ms = (loop.time() - started) * 1000
                        span.add_event("first_audio", {"orpheus.ttfa_ms": round(info.ttfa_ms, 3)})
                    yield frame.pcm()
                elif isinstance(frame, p.MetricsFrame):
                    attempt.note_metrics(frame)
                elif isinstance(frame, p.EosFrame):
                    info.eos = frame
                    break
                elif isinstance(frame, p.ErrorFrame):
                    raise attempt.error_from(frame)
                frame = await self._before(deadline, attempt.next_frame(), attempt.url)
            attempt.succeeded()
            # The stream is complete; reading the body's end only lets the connection be
            # reused. If that fails or takes long, the connection is closed instead.
            try:
                await _within(loop.time() + _DRAIN_TIMEOUT_S, attempt.drain())
            except (asyncio.TimeoutError, httpx.HTTPError):
                pass
        except BaseException as exc:
            attempt.judge(exc)  # audio was delivered: whatever it says, nothing is retried
            tracing.fail(span, getattr(exc, "code", None) or type(exc).__name__)
            raise
        finally:
            await attempt.aclose()
            span.end()

    @staticmethod
    async def _before(deadline: float | None, aw: Any, url: str) -> Any:
        """Await `aw`, raising `DeadlineExceededError` if the request's deadline (loop time)
        passes first. The one deadline is armed around each read, no task per frame."""
        if deadline is None:
            return await aw
        try:
            return await _within(deadline, aw)
        except asyncio.TimeoutError as exc:
            if isinstance(exc, DeadlineExceededError):
                raise
            raise DeadlineExceededError(
                "request deadline (timeout_s) passed", endpoint=url
            ) from None

    async def _race(
        self, body: dict[str, Any], deadline: float | None, info: StreamInfo
    ) -> tuple[_Attempt, p.Frame]:
        """Run attempts until one delivers audio; hedge and fail over as configured.

        Returns the winning attempt (now owned by the caller) and its first frame; every
        other attempt is closed before this returns or raises.
        """
        loop = asyncio.get_running_loop()
        router = self._router
        hedge_s = self.hedge_ttfb_ms / 1000 if self.hedge_ttfb_ms else None
        live: dict[asyncio.Task[p.Frame], _Attempt] = {}
        hedge_at: float | None = None
        hedge_used = False  # at most one backup per request
        last_exc: BaseException | None = None

        def launch(url: str) -> None:
            nonlocal hedge_at
            attempt = _Attempt(self, url, body)
            attempt.task = loop.create_task(attempt.until_audio())
            self._attempts.add(attempt)
            live[attempt.task] = attempt
            info.attempts.append(url)
            hedge_at = loop.time() + hedge_s if hedge_s and not hedge_used else None

        def next_url() -> str | None:
            if len(info.attempts) >= self.max_attempts:
                return None
            endpoint = router.pick(exclude=info.attempts)
            return endpoint.url if endpoint else None

        launch(router.pick_first().url)
        try:
            while True:
                timers = [t for t in (deadline, hedge_at) if t is not None]
                timeout = max(0.0, min(timers) - loop.time()) if timers else None
                done, _ = await asyncio.wait(
                    live, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                now = loop.time()
                if not done:
                    if deadline is not None and now >= deadline:
                        raise DeadlineExceededError(
                            "request deadline (timeout_s) passed before any audio",
                            endpoint=", ".join(a.url for a in live.values()),
                        )
                    if hedge_at is not None and now >= hedge_at:
                        hedge_used, hedge_at = True, None
                        url = next_url()
                        if url is not None:
                            info.hedged = True
                            launch(url)
                    continue
                if any(task.cancelled() for task in done):
                    raise RuntimeError("stream aborted: the OrpheusTTS instance was closed")
                for task in done:
                    if task.exception() is None:
                        winner = live.pop(task)
                        for loser in live.values():  # slower than the winner: note it
                            router.record_slow(loser.url, (time.monotonic() - loser.started) * 1000)
                        return winner, task.result()
                for task in done:
                    attempt = live.pop(task)
                    exc = task.exception()
                    assert exc is not None
                    try_another = attempt.judge(exc)
                    await attempt.aclose()
                    if not try_another:
                        raise exc
                    last_exc = exc
                if not live:
                    url = next_url()
                    if url is None:
                        assert last_exc is not None
                        raise last_exc
                    launch(url)
        finally:
            await asyncio.gather(*(a.aclose() for a in live.values()), return_exceptions=True)
