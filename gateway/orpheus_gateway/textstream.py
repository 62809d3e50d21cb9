"""One utterance whose text arrives in pieces: segments, pipelined upstreams, one audio stream.

`TextUtterance` takes text (`append`), a `flush` (send what is buffered now) and an `end`;
`orpheus_gateway.segmenter` cuts the text into segments, and each segment is synthesised
through `open_segment(text)`, a callable that opens one upstream stream (the gateway passes
one over its worker pool; tests pass a fake). While the head segment's audio is being relayed,
up to `lookahead` following segments are already open and buffering their audio, so the next
segment's first audio is ready before the previous one's runs out whenever text arrives faster
than real time.

Speculative start: when the buffered text ends in a sentence (or first-segment clause) end
that would be a cut as soon as whitespace follows it, its upstream opens at once rather than
one token later, but its audio is held until the next text, a flush or the end confirms the
cut. If the next text continues the word instead (`example.` then `com`), that upstream is
aborted, like a cancelled one, and the text carries on; no audio of it is ever relayed.

Ownership and completion: each upstream is owned by the one reader task that opened it and is
closed in that task's `finally`; the utterance owns the reader tasks and the driver task that
relays audio in segment order. Every utterance ends with exactly one terminal (`Done`,
`Failed`, `Cancelled`) passed to `on_end`, and no audio is passed to `on_audio` after it.
`cancel()` is idempotent, sends `Cancelled` at once and aborts every queued and in-flight
upstream before it returns.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from orpheus_tts import protocol as p

from .segmenter import Segmenter, SegmenterConfig

log = logging.getLogger("orpheus_gateway.textstream")

DEFAULT_MAX_UTTERANCE_CHARS = 100_000
_QUEUE_CHUNKS = 256  # audio chunks one segment may buffer ahead before its upstream waits


class SegmentStream(Protocol):
    """One open upstream: its PCM chunks, then the end (or `SegmentFailed`)."""

    def audio(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


OpenSegment = Callable[[str], Awaitable[SegmentStream]]


class SegmentFailed(Exception):
    def __init__(self, code: str, message: str, retryable: bool = False):
        super().__init__(message)
        self.code, self.message, self.retryable = code, message, retryable


class UtteranceClosed(Exception):
    """Text or a flush for an utterance that was ended, cancelled or has finished."""


@dataclass(frozen=True)
class Done:
    stats: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Failed:
    code: str
    message: str
    retryable: bool = False


@dataclass(frozen=True)
class Cancelled:
    pass


Terminal = Done | Failed | Cancelled
_END = object()


class _Job:
    """One segment: the reader task that owns its upstream, and the audio it has read."""

    def __init__(self, text: str, open_segment: OpenSegment, on_audio: Callable[[], None]):
        self.text = text
        self.queue: asyncio.Queue = asyncio.Queue(_QUEUE_CHUNKS)
        self.aborted = False
        self.audible = False  # its first audio (or its end) has arrived
        self._on_audio = on_audio
        self.task = asyncio.create_task(self._read(open_segment), name="segment-reader")

    def _heard(self) -> None:
        if not self.audible:
            self.audible = True
            self._on_audio()

    def abort(self) -> None:
        self.aborted = True
        self.task.cancel()

    async def _read(self, open_segment: OpenSegment) -> None:
        stream: SegmentStream | None = None
        try:
            stream = await open_segment(self.text)
            async for pcm in stream.audio():
                if self.aborted:  # a cancellation that code below swallowed
                    return
                await self.queue.put(pcm)
                self._heard()
            await self.queue.put(_END)
            self._heard()
        except asyncio.CancelledError:
            raise
        except SegmentFailed as exc:
            await self.queue.put(exc)
            self._heard()
        except Exception as exc:  # noqa: BLE001 - reported as the utterance's terminal
            log.exception("segment failed")
            await self.queue.put(SegmentFailed(
                p.ErrorCode.INTERNAL, f"Internal error while speaking: {type(exc).__name__}."))
            self._heard()
        finally:
            if stream is not None:
                await stream.aclose()


class TextUtterance:
    def __init__(self, open_segment: OpenSegment,
                 on_audio: Callable[[bytes], Awaitable[bool]],
                 on_end: Callable[[Terminal], Awaitable[None]],
                 segmenter: SegmenterConfig | None = None, lookahead: int = 1,
                 on_segment: Callable[[int, str | None], Awaitable[None]] | None = None,
                 max_chars: int = DEFAULT_MAX_UTTERANCE_CHARS,
                 max_segment_chars: int = p.DEFAULT_MAX_TEXT_CHARS):
        self._open_segment = open_segment
        self._on_audio = on_audio
        self._on_end = on_end
        # (index, text) as a segment's audio begins, (index, None) when it has all been relayed
        self._on_segment = on_segment
        self._relayed = 0  # segments whose audio has been relayed completely
        self._head_started = False
        self._segmenter = Segmenter(segmenter, max_chars=max_segment_chars)
        self._lookahead = lookahead
        self._max_chars = max_chars
        self._max_segment_chars = max_segment_chars
        self._loop = asyncio.get_running_loop()
        self._ready: deque[str] = deque()  # cut, not yet opened
        self._jobs: deque[_Job] = deque()  # opened, in order; the head is being relayed
        self._spec: _Job | None = None  # opened on text whose cut is not yet confirmed
        self._spec_pending = ""  # the segmenter's pending text it was opened on
        self._dropped: list[_Job] = []  # refuted speculative jobs, until their readers end
        self._wake = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._chars = 0
        self._ended = False  # `end()` said, or aborted
        self._refusing = False  # failed by a synchronous call, its terminal on its way
        self._finished = False
        self._emit_lock = asyncio.Lock()
        self.segments: list[str] = []  # every segment sent to synthesis, in order
        self.audio_bytes = 0
        self._driver: asyncio.Task | None = None
        self._aborter: asyncio.Task | None = None  # a failure found by a synchronous call

    # --- the caller's side -------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def waiting_for_text(self) -> bool:
        """Not ended, and nothing to synthesise or relay: only more text would change that."""
        return not (self._ended or self._finished or self._jobs or self._ready)

    def start(self) -> None:
        """Begin synthesising (text appended before this is only buffered and cut)."""
        if self._driver is None and not self._finished:
            self._driver = asyncio.create_task(self._drive(), name="text-utterance")
            self._fill()

    def append(self, text: str) -> None:
        self._check_open()
        if len(text) > p.WS_MAX_APPEND_CHARS:
            self._fail_soon(p.ErrorCode.TEXT_TOO_LONG,
                            f"One piece of text takes at most {p.WS_MAX_APPEND_CHARS} "
                            "characters; send longer text in several.")
            return
        self._chars += len(text)
        if self._chars > self._max_chars:
            self._fail_soon(p.ErrorCode.TEXT_TOO_LONG,
                            f"An utterance takes at most {self._max_chars} characters.")
            return
        self._take(self._segmenter.append(text, self._loop.time()))
        if len(self._segmenter.pending) > self._max_segment_chars:
            self._fail_soon(p.ErrorCode.TEXT_TOO_LONG,
                            f"{self._max_segment_chars} characters arrived without a space or "
                            "a full-width stop to cut them at.")

    def flush(self) -> None:
        self._check_open()
        self._take(self._segmenter.flush())

    def end(self) -> None:
        """No more text: speak what is buffered, then finish with `Done`."""
        self._check_open()
        self._take(self._segmenter.flush())
        self._ended = True
        self._wake.set()

    async def cancel(self) -> None:
        """`Cancelled` now (unless already finished), and every upstream closed. Idempotent."""
        await self._abort(Cancelled())

    async def wait(self) -> None:
        """Until the terminal has been sent and every task has ended."""
        for task in (self._aborter, self._driver):
            if task is not None:
                await asyncio.gather(task, return_exceptions=True)
        await self._reap()

    # --- internals ---------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._ended or self._finished or self._refusing:
            raise UtteranceClosed()

    def _take(self, segments: list[str]) -> None:
        segments = [s for s in segments if s.strip()]
        spec, self._spec = self._spec, None
        if spec is not None:
            if segments and segments[0].strip() == spec.text:  # the cut is real: keep it
                self.segments.append(segments.pop(0))
                self._jobs.append(spec)
            elif not segments and self._segmenter.pending == self._spec_pending:
                self._spec = spec  # nothing new yet (a poll that cut nothing)
            else:
                self._drop(spec)
        self._ready.extend(segments)
        self._fill()
        self._arm_timer()
        self._wake.set()

    def _drop(self, job: _Job) -> None:
        job.abort()
        self._dropped = [j for j in self._dropped if not j.task.done()]
        self._dropped.append(job)

    def _fill(self) -> None:
        """Start the next segments: up to `lookahead` beyond the head, each once the one before
        it has its first audio, so a prefetch never competes with the first audio it follows
        (and starts long before that segment's audio runs out)."""
        if self._driver is None:
            return
        while (self._ready and len(self._jobs) <= self._lookahead and not self._finished
               and (not self._jobs or self._jobs[-1].audible)):
            text = self._ready.popleft()
            self.segments.append(text)
            self._jobs.append(_Job(text.strip(), self._open_segment, self._fill))
        self._speculate()

    def _speculate(self) -> None:
        """Open the pending text early where `_fill` would open it at once if it were cut."""
        if (self._spec is not None or self._driver is None or self._finished or self._ended
                or self._refusing or self._ready or len(self._jobs) > self._lookahead
                or (self._jobs and not self._jobs[-1].audible)):
            return
        text = self._segmenter.tentative()
        if text is not None:
            self._spec_pending = text
            self._spec = _Job(text.strip(), self._open_segment, self._fill)

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        due = self._segmenter.due()
        if due is not None and not self._finished:
            self._timer = self._loop.call_at(due, self._on_due)

    def _on_due(self) -> None:
        """The maximum wait is for a listener who would otherwise hear nothing: while an
        earlier segment is still being synthesised or relayed, the text waits for a boundary
        (a fast writer's later segments stay whole sentences); `_relay` re-arms this once
        nothing is left. Text that has grown past `long_chars` goes out regardless."""
        self._timer = None
        if self._finished or self._ended:
            return
        if ((self._jobs or self._ready) and len(self._segmenter.pending.strip())
                < self._segmenter.config.long_chars):
            return
        self._take(self._segmenter.poll(self._loop.time()))

    def _fail_soon(self, code: str, message: str) -> None:
        self._refusing = True  # not `_ended`: the driver must not finish with `Done` first
        if self._aborter is None:
            self._aborter = asyncio.create_task(self._abort(Failed(code, message)))

    async def _drive(self) -> None:
        try:
            await self._relay()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the utterance must still end explicitly
            log.exception("text utterance failed")
            await self._abort(Failed(p.ErrorCode.INTERNAL, "Internal error while speaking."))
        finally:
            self._stop_timer()

    async def _relay(self) -> None:
        while not self._finished:
            if self._jobs:
                head = self._jobs[0]
                if not self._head_started:
                    self._head_started = True
                    await self._note_segment(self._relayed, head.text)
                item = await head.queue.get()
                if item is _END:
                    self._jobs.popleft()
                    await self._note_segment(self._relayed, None)
                    self._relayed += 1
                    self._head_started = False
                    self._fill()
                    if not self._jobs and not self._ready:
                        self._arm_timer()  # text held back while this was spoken may be due
                elif isinstance(item, SegmentFailed):
                    await self._abort(Failed(item.code, item.message, item.retryable))
                else:
                    if not await self._emit_audio(item):
                        await self._abort(Cancelled())  # the client is gone
            elif self._ended and not self._ready:
                await self._finish(Done({"segments": len(self.segments),
                                         "audio_bytes": self.audio_bytes}))
            else:
                self._wake.clear()
                await self._wake.wait()

    async def _note_segment(self, index: int, text: str | None) -> None:
        if self._on_segment is not None:
            async with self._emit_lock:
                if not self._finished:
                    await self._on_segment(index, text)

    async def _emit_audio(self, pcm: bytes) -> bool:
        async with self._emit_lock:
            if self._finished:
                return True
            self.audio_bytes += len(pcm)
            return await self._on_audio(pcm)

    async def _finish(self, terminal: Terminal) -> bool:
        async with self._emit_lock:
            if self._finished:
                return False
            self._finished = True
            await self._on_end(terminal)
            return True

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _abort(self, terminal: Terminal) -> None:
        self._ended = True
        self._stop_timer()
        self._ready.clear()
        me = asyncio.current_task()
        if self._spec is not None:
            self._drop(self._spec)
            self._spec = None
        for job in self._jobs:
            job.abort()
        if self._driver is not None and self._driver is not me:
            self._driver.cancel()
        await self._finish(terminal)
        await self._reap()

    async def _reap(self) -> None:
        """Wait for every reader to end (its `finally` closes its upstream). An aborted reader
        is cancelled again until it ends: code under it may swallow one cancellation (Python
        3.11's `asyncio.wait_for` does when its wait completes as it is cancelled)."""
        jobs = [*self._jobs, *self._dropped]
        pending = {job.task for job in jobs if not job.task.done()}
        while pending:
            _, pending = await asyncio.wait(pending, timeout=0.02)
            for job in jobs:
                if job.aborted and job.task in pending:
                    job.task.cancel()
