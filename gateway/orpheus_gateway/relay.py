"""Streams from workers: choosing one with failover, then passing its NDJSON lines through.

`Upstream.open()` tries workers (at most `max_attempts`) until one has produced its first
line: a refused connection, a 5xx/503/429, a body that ends before any frame, or a retryable
`error` as the very first frame all move the request to another worker. Nothing has reached
the client yet, so that is safe. After the first line the request is committed to the worker.

`UpstreamStream` owns that one worker response and its `Lease`. `lines()` yields its NDJSON
lines untouched (audio is never decoded here) and guarantees exactly one terminal frame: a lost
worker or a body that ends without `eos`/`error` gets `upstream_lost` appended, a passed
deadline gets `deadline_exceeded`, and nothing follows the terminal frame. The deadline is one
timer per stream that interrupts the pending read; `interrupt()` does the same for a client
that went away. `aclose()` is idempotent and closes the worker connection unless the body was
read to its end, which is how a client disconnect reaches the worker.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp

from orpheus_tts import protocol as p
from orpheus_tts import tracing

from .worker_pool import Lease, WorkerPool

log = logging.getLogger("orpheus_gateway.relay")

_RETRY_AFTER_CAP_S = 30.0
_END_OF_BODY_WAIT_S = 0.5  # the worker ends its body right after the terminal frame
_DEADLINE_MESSAGE = "The request's deadline passed."
# What a broken worker connection raises (aiohttp's connect timeout is a ClientError too).
CONNECTION_ERRORS = (aiohttp.ClientError, OSError)
HOLD_RECHECK_S = 0.5  # a held request looks for a worker at least this often


class LineTooLong(aiohttp.ClientPayloadError):
    """A worker line over `p.MAX_FRAME_BYTES`: the stream is broken, as if its connection were."""


class LineReader:
    """Splits a byte stream into lines without decoding them, none over `p.MAX_FRAME_BYTES`."""

    def __init__(self, chunks: AsyncIterator[bytes]):
        self._chunks = chunks
        self._buf = b""
        self._eof = False

    async def readline(self) -> bytes | None:
        """The next non-blank line (newline included), or None at the end of the body."""
        while True:
            buf = self._buf
            i = buf.find(b"\n")
            if (i if i >= 0 else len(buf)) >= p.MAX_FRAME_BYTES:
                raise LineTooLong(f"a line over {p.MAX_FRAME_BYTES} bytes")
            if i >= 0:
                line = buf[: i + 1]
                self._buf = buf[i + 1:]
                if line[:1] == b"{" or line.strip():
                    return line
                continue
            if self._eof:
                self._buf = b""
                return buf + b"\n" if buf.strip() else None
            try:
                data = await self._chunks.__anext__()
            except StopAsyncIteration:
                self._eof = True
                continue
            self._buf = buf + data if buf else data


class Interrupted(Exception):
    """Set on a worker response's reader to end a pending read (deadline, client gone)."""


class DeadlinePassed(Interrupted):
    pass


class ClientGone(Interrupted):
    pass


class UpstreamStream:
    """One worker's response, owned by exactly one consumer."""

    def __init__(self, lease: Lease, response: aiohttp.ClientResponse, reader: LineReader,
                 first_line: bytes | None, deadline: float):
        self.lease = lease
        self.worker = lease.worker
        self.request_id = response.headers.get(p.HEADER_REQUEST_ID)
        self.headers = response.headers
        self._response = response
        self._reader = reader
        self._first = first_line
        self._closed = False
        self._timer = asyncio.get_running_loop().call_later(
            max(0.0, deadline - time.monotonic()), self.interrupt, DeadlinePassed())
        self.outcome: str | None = None  # "eos" or the error code of the terminal frame sent

    @property
    def first_line(self) -> bytes | None:
        """The first line, until `lines()` has taken it."""
        return self._first

    def interrupt(self, exc: Interrupted) -> None:
        """End the pending (or next) read with `exc`; callable from any task or a timer."""
        if not self._closed:
            self._response.content.set_exception(exc)

    async def lines(self) -> AsyncIterator[bytes]:
        """Every line to send on, ending with exactly one terminal frame (none when the client
        went away: there is nobody to send it to)."""
        try:
            line = self._first
            self._first = None
            readline = self._reader.readline
            while True:
                if line is None:
                    try:
                        line = await readline()
                    except DeadlinePassed:
                        line = p.error_line(p.ErrorCode.DEADLINE_EXCEEDED, _DEADLINE_MESSAGE)
                    except ClientGone:
                        return
                    except CONNECTION_ERRORS as exc:
                        log.info("worker %s lost mid-stream: %s", self.worker.id,
                                 type(exc).__name__)
                        line = p.error_line(p.ErrorCode.UPSTREAM_LOST,
                                            "The worker was lost in the middle of the stream.")
                    if line is None:
                        line = p.error_line(p.ErrorCode.UPSTREAM_LOST,
                                            "The worker's stream ended without a terminal frame.")
                if line.startswith(p.CHUNK_LINE_PREFIX):
                    yield line
                    line = None
                    continue
                kind = p.frame_type(line)
                if kind == "metrics":
                    self._note_metrics(line)
                elif kind in p.TERMINAL_TYPES:
                    self._finish(kind, line)
                    yield line
                    await self._read_to_end()
                    return
                elif kind is None and not line.startswith(b"{"):
                    line = p.error_line(p.ErrorCode.UPSTREAM_LOST,
                                        "The worker sent a malformed frame.")
                    continue
                yield line
                line = None
        finally:
            await self.aclose()

    async def _read_to_end(self) -> None:
        """After the terminal frame: wait (briefly) for the end of the body, so the connection
        can carry the next stream instead of being closed. Nothing may follow a terminal
        frame; whatever does is dropped."""
        content = self._response.content
        try:
            async with asyncio.timeout(_END_OF_BODY_WAIT_S):
                while not content.is_eof() and await content.readany():
                    pass
        except (TimeoutError, Interrupted, *CONNECTION_ERRORS):
            pass

    def _note_metrics(self, line: bytes) -> None:
        try:
            frame = p.decode_frame(line)
        except p.FrameDecodeError:
            return
        if isinstance(frame, p.MetricsFrame):
            self.lease.note_hints(p.LoadHints(frame.queue_depth, frame.inflight, frame.worker_id))

    def _finish(self, kind: str, line: bytes) -> None:
        if kind == "eos":
            self.outcome = "eos"
            self.lease.succeeded()
            return
        try:
            code = p.ErrorCode.of(json.loads(line).get("code"))
        except (ValueError, AttributeError):
            code = p.ErrorCode.INTERNAL
        self.outcome = code
        self.lease.failed(code)

    async def aclose(self) -> None:
        """Close the worker connection (the worker then aborts generation). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._timer.cancel()
        self.lease.release()  # no-op when `_finish` gave the verdict
        response = self._response
        if self.outcome is not None and response.content.is_eof():
            response.release()  # read to its end: the connection can carry the next stream
        else:
            response.close()


class Upstream:
    """Opens worker streams for the gateway; one per app."""

    def __init__(self, pool: WorkerPool, session: aiohttp.ClientSession, *,
                 max_attempts: int = 3, max_pending: int = 0,
                 on_failover: Callable[[], None] = lambda: None):
        self.pool = pool
        self.session = session
        self.max_attempts = max_attempts
        self.max_pending = max_pending
        self.waiting = 0  # requests no worker has accepted yet (the gateway's own queue)
        self.held = 0  # of those, the ones no worker could take: waiting for one to appear
        self._changed = asyncio.Event()
        self._on_failover = on_failover

    def workers_changed(self) -> None:
        """The pool changed or was polled: held requests try again."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_for_workers(self, deadline: float) -> None:
        changed = self._changed
        try:
            async with asyncio.timeout(max(0.0, min(HOLD_RECHECK_S,
                                                    deadline - time.monotonic()))):
                await changed.wait()
        except TimeoutError:
            pass

    def _shut_out(self, key: str | None) -> bool:
        """Workers take other keys' streams but this key's own failures opened its breakers
        on every one of them: holding would not help, so the request is refused now."""
        return (key is not None and bool(self.pool.eligible())
                and not self.pool.eligible(key=key))

    async def open(self, payload: dict[str, Any], request_id: str, deadline: float,
                   key: str | None = None) -> UpstreamStream:
        """A committed stream, or `RequestError` (a worker's request fault, the deadline, or
        `no_workers` when none could take it).

        When no worker can take the request (none, all refusing, all unreachable), it is held
        until one can or its deadline passes, if fewer than `max_pending` are held already (a
        fleet scaled to zero or still starting); past that, 503 `overloaded` with Retry-After.
        `key` is the caller's key id: breakers keep one key's failures from closing workers to
        every other key. Refusals name no worker (its address is nobody's business outside);
        the log does, at INFO."""
        tried: set[str] = set()
        last_problem = "no worker is available"
        queued = [True]
        held = False

        def accepted() -> None:
            """A worker answered 200: the request no longer waits in the gateway."""
            if queued[0]:
                queued[0] = False
                self.waiting -= 1

        self.waiting += 1
        try:
            while True:
                for attempt in range(self.max_attempts):
                    lease = self.pool.lease(exclude=tried, key=key)
                    if lease is None:
                        break
                    if attempt:
                        self._on_failover()
                    tried.add(lease.worker.url)
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        lease.release()
                        break
                    body = dict(payload, timeout_s=max(0.001, round(remaining, 3)))
                    outcome = await self._attempt(lease, body, request_id, deadline, accepted)
                    if isinstance(outcome, UpstreamStream):
                        return outcome
                    log.info("request %s: worker %s: %s", request_id, lease.worker.id, outcome)
                    last_problem = outcome
                if (time.monotonic() >= deadline or self.max_pending == 0
                        or self._shut_out(key)):
                    break
                if not held:
                    if self.held >= self.max_pending:
                        raise p.RequestError(
                            p.ErrorCode.OVERLOADED,
                            f"No worker can take the request and {self.held} requests are "
                            f"already waiting for one; retry later.",
                            retry_after_s=self.pool.retry_after_s())
                    held = True
                    self.held += 1
                await self._wait_for_workers(deadline)
                tried.clear()
        finally:
            if held:
                self.held -= 1
            accepted()
        if time.monotonic() >= deadline:
            raise p.RequestError(p.ErrorCode.DEADLINE_EXCEEDED,
                                 "The request's deadline passed before a worker took it.")
        if not tried:
            raise p.RequestError(p.ErrorCode.NO_WORKERS, "No worker is available.",
                                 retry_after_s=self.pool.retry_after_s())
        raise p.RequestError(
            p.ErrorCode.NO_WORKERS,
            f"No worker could take the request ({len(tried)} tried; last: {last_problem}).",
            retry_after_s=self.pool.retry_after_s())

    async def _attempt(self, lease: Lease, body: dict[str, Any], request_id: str,
                       deadline: float, accepted: Callable[[], None]) -> UpstreamStream | str:
        """One worker: a committed stream, or a short description of why to try another.
        Connecting, the answer's head and its first line share the request's deadline."""
        worker = lease.worker
        response: aiohttp.ClientResponse | None = None
        committed = False
        try:
            try:
                async with asyncio.timeout(deadline - time.monotonic()):
                    response = await self.session.post(
                        worker.url + p.STREAM_PATH, data=json.dumps(body).encode(),
                        headers=tracing.inject({p.HEADER_REQUEST_ID: request_id,
                                                "Content-Type": "application/json"}))
                    lease.note_hints(p.LoadHints.from_headers(response.headers))
                    if response.status != 200:
                        return await self._refused(lease, response)
                    lease.accepted()
                    accepted()
                    reader = LineReader(response.content.iter_any())
                    first = await reader.readline()
            except CONNECTION_ERRORS as exc:
                lease.failed(p.ErrorCode.UPSTREAM_LOST, connection=response is None)
                when = "connecting" if response is None else "before the first frame"
                return f"lost {when} ({type(exc).__name__})"
            except TimeoutError:
                if response is None or response.status != 200:
                    return "the deadline passed while connecting"
                # The deadline passed with the request on this worker: the stream says so.
                first = p.error_line(p.ErrorCode.DEADLINE_EXCEEDED, _DEADLINE_MESSAGE)
            if first is None:
                lease.failed(p.ErrorCode.UPSTREAM_LOST, blame=True)
                return "empty stream"
            if p.line_type(first) == "error":
                frame = p.decode_frame(first)
                code = frame.error_code if isinstance(frame, p.ErrorFrame) else None
                if code is not None and code.retryable:
                    lease.failed(code)
                    return f"{code} before the first chunk"
            committed = True
            return UpstreamStream(lease, response, reader, first, deadline)
        finally:
            if not committed:
                lease.release()  # no-op when a verdict was given
                if response is not None:
                    response.close()

    async def _refused(self, lease: Lease, response: aiohttp.ClientResponse) -> str:
        """A non-200 answer: a request fault is the client's problem (raised); the rest moves
        on to another worker."""
        status = response.status
        try:
            raw = await response.read()
        except CONNECTION_ERRORS:
            raw = b""
        err: dict[str, Any] = {}
        try:
            err = json.loads(raw).get("error") or {}
        except (ValueError, AttributeError):
            pass
        code = p.ErrorCode.of(err.get("code"), status)
        if code.request_fault:  # the request is wrong: no other worker would take it either
            lease.succeeded()
            raise p.RequestError(code, str(err.get("message") or f"Worker refused: HTTP {status}"),
                                 param=err.get("param"))
        retry_after = response.headers.get(p.HEADER_RETRY_AFTER)
        if retry_after is not None or (code.retryable and not code.endpoint_fault):  # busy
            lease.cool_down(_retry_after(retry_after))
        # A worker refusing what only the gateway decides (auth, routes) is misconfigured.
        lease.failed(code, blame=None if code.retryable else True,
                     connection=not code.retryable)
        return f"HTTP {status} {code}"


def _retry_after(value: str | None) -> float:
    try:
        return min(_RETRY_AFTER_CAP_S, max(0.0, float(value))) if value else 1.0
    except ValueError:
        return 1.0
