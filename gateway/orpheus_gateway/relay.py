"""Streams from workers: choosing one with failover, then passing its NDJSON lines through.

`Upstream.open()` tries workers (at most `max_attempts`) until one has produced its first
line: a refused connection, a 5xx/503/429, a body that ends before any frame, or a retryable
`error` as the very first frame all move the request to another worker. Nothing has reached
the client yet, so that is safe. After the first line the request is committed to the worker.

`UpstreamStream` owns that one worker response. `lines()` yields its NDJSON lines untouched
(audio is never decoded here) and guarantees exactly one terminal frame: a lost worker or a
body that ends without `eos`/`error` gets `upstream_lost` appended, a passed deadline gets
`deadline_exceeded`, and nothing follows the terminal frame. `aclose()` is idempotent and
closes the worker connection, which is how a client disconnect reaches the worker.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from orpheus_tts import protocol as p

from .worker_pool import Worker, WorkerPool

log = logging.getLogger("orpheus_gateway.relay")

_RETRY_AFTER_CAP_S = 30.0


class LineReader:
    """Splits a byte stream into lines without decoding them."""

    def __init__(self, chunks: AsyncIterator[bytes]):
        self._chunks = chunks
        self._buf = bytearray()
        self._eof = False

    async def readline(self) -> bytes | None:
        """The next non-blank line (newline included), or None at the end of the body."""
        while True:
            i = self._buf.find(b"\n")
            if i >= 0:
                line = bytes(self._buf[: i + 1])
                del self._buf[: i + 1]
                if line.strip():
                    return line
                continue
            if self._eof:
                if self._buf.strip():
                    line = bytes(self._buf) + b"\n"
                    self._buf.clear()
                    return line
                return None
            try:
                data = await self._chunks.__anext__()
            except StopAsyncIteration:
                self._eof = True
                continue
            self._buf += data


class UpstreamStream:
    """One worker's response, owned by exactly one consumer."""

    def __init__(self, upstream: Upstream, worker: Worker, response: httpx.Response,
                 reader: LineReader, first_line: bytes | None, deadline: float):
        self.worker = worker
        self.request_id = response.headers.get(p.HEADER_REQUEST_ID)
        self.headers = response.headers
        self._upstream = upstream
        self._response = response
        self._reader = reader
        self._first = first_line
        self._deadline = deadline
        self._closed = False
        self.outcome: str | None = None  # "eos" or the error code of the terminal frame sent

    @property
    def first_line(self) -> bytes | None:
        """The first line, until `lines()` has taken it."""
        return self._first

    async def lines(self) -> AsyncIterator[bytes]:
        """Every line to send on, ending with exactly one terminal frame."""
        try:
            line = self._first
            self._first = None
            while True:
                if line is None:
                    line, terminal_if_none = await self._next_line()
                    if line is None:
                        line = terminal_if_none
                kind = p.line_type(line)
                if kind == "metrics":
                    self._upstream.note_metrics(self.worker, line)
                if kind in p.TERMINAL_TYPES:
                    self._finish(kind, line)
                    yield line
                    return
                if kind is None and not line.startswith(b"{"):
                    line = p.error_line(p.ErrorCode.UPSTREAM_LOST,
                                      "The worker sent a malformed frame.")
                    continue
                yield line
                line = None
        finally:
            await self.aclose()

    async def _next_line(self) -> tuple[bytes | None, bytes]:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            return None, self._deadline_line()
        try:
            line = await asyncio.wait_for(self._reader.readline(), remaining)
        except asyncio.TimeoutError:
            return None, self._deadline_line()
        except (httpx.HTTPError, OSError) as exc:
            log.info("worker %s lost mid-stream: %s", self.worker.id, type(exc).__name__)
            return None, p.error_line(p.ErrorCode.UPSTREAM_LOST,
                                    "The worker was lost in the middle of the stream.")
        if line is None:
            return None, p.error_line(p.ErrorCode.UPSTREAM_LOST,
                                    "The worker's stream ended without a terminal frame.")
        return line, b""

    @staticmethod
    def _deadline_line() -> bytes:
        return p.error_line(p.ErrorCode.DEADLINE_EXCEEDED, "The request's deadline passed.")

    def _finish(self, kind: str, line: bytes) -> None:
        if kind == "eos":
            self.outcome = "eos"
            self.worker.breaker.success()
            return
        try:
            code = p.ErrorCode.of(json.loads(line).get("code"))
        except (ValueError, AttributeError):
            code = p.ErrorCode.INTERNAL
        self.outcome = code
        if code.endpoint_fault:
            self.worker.breaker.failure()
        else:
            self.worker.breaker.release_trial()
        if code is p.ErrorCode.UPSTREAM_LOST:
            self._upstream.suspect(self.worker)

    async def aclose(self) -> None:
        """Close the worker connection (the worker then aborts generation). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self.outcome is None:
            self.worker.breaker.release_trial()
        self.worker.local_inflight -= 1
        # The worker's reported inflight counted this stream; do not wait for the next poll.
        self.worker.hint_inflight = max(0, self.worker.hint_inflight - 1)
        try:
            await self._response.aclose()
        except Exception:  # noqa: BLE001 - closing a broken connection may raise; it is closed
            pass


class Upstream:
    """Opens worker streams for the gateway; one per app."""

    def __init__(self, pool: WorkerPool, client: httpx.AsyncClient, *, max_attempts: int = 3,
                 on_failover: Callable[[], None] = lambda: None,
                 on_suspect: Callable[[Worker], None] = lambda w: None):
        self.pool = pool
        self.client = client
        self.max_attempts = max_attempts
        self.waiting = 0  # requests no worker has accepted yet (the gateway's own queue)
        self._on_failover = on_failover
        self._on_suspect = on_suspect

    def suspect(self, worker: Worker) -> None:
        self._on_suspect(worker)

    def note_metrics(self, worker: Worker, line: bytes) -> None:
        try:
            frame = p.decode_frame(line)
        except p.FrameDecodeError:
            return
        if isinstance(frame, p.MetricsFrame):
            worker.update_hints(inflight=frame.inflight, queue_depth=frame.queue_depth)
            if frame.worker_id:
                worker.name = frame.worker_id

    def note_headers(self, worker: Worker, headers: httpx.Headers) -> None:
        hints = p.LoadHints.from_headers(headers)
        worker.update_hints(inflight=hints.inflight, queue_depth=hints.queue_depth)
        if hints.worker_id:
            worker.name = hints.worker_id

    async def open(self, payload: dict[str, Any], request_id: str, deadline: float) -> UpstreamStream:
        """A committed stream, or `RequestError` (a worker's 4xx, or 503 when none could take it)."""
        tried: set[str] = set()
        last_problem = "no worker is available"
        queued = [True]

        def accepted() -> None:
            """A worker answered 200: the request no longer waits in the gateway."""
            if queued[0]:
                queued[0] = False
                self.waiting -= 1

        self.waiting += 1
        try:
            for attempt in range(self.max_attempts):
                worker = self.pool.pick(exclude=tried)
                if worker is None:
                    break
                if attempt:
                    self._on_failover()
                tried.add(worker.url)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    worker.breaker.release_trial()
                    break
                body = dict(payload, timeout_s=max(0.001, round(remaining, 3)))
                outcome = await self._attempt(worker, body, request_id, deadline, accepted)
                if isinstance(outcome, UpstreamStream):
                    return outcome
                last_problem = outcome
        finally:
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

    async def _attempt(self, worker: Worker, body: dict[str, Any], request_id: str,
                       deadline: float, accepted: Callable[[], None]) -> UpstreamStream | str:
        """One worker: a committed stream, or a short description of why to try another."""
        worker.local_inflight += 1
        response: httpx.Response | None = None
        committed = False
        try:
            request = self.client.build_request(
                "POST", worker.url + p.STREAM_PATH, json=body,
                headers={p.HEADER_REQUEST_ID: request_id})
            try:
                response = await asyncio.wait_for(
                    self.client.send(request, stream=True), deadline - time.monotonic())
            except asyncio.TimeoutError:
                worker.breaker.release_trial()
                return "the deadline passed while connecting"
            except (httpx.HTTPError, OSError) as exc:
                worker.breaker.failure()
                self.suspect(worker)
                return f"{worker.id}: {type(exc).__name__}"
            self.note_headers(worker, response.headers)
            status = response.status_code
            if status != 200:
                return await self._refused(worker, response)
            accepted()
            reader = LineReader(response.aiter_raw())
            try:
                first = await asyncio.wait_for(reader.readline(), deadline - time.monotonic())
            except asyncio.TimeoutError:
                # The deadline passed with the request on this worker: the stream says so.
                committed = True
                return UpstreamStream(self, worker, response, reader,
                                      UpstreamStream._deadline_line(), deadline)
            except (httpx.HTTPError, OSError) as exc:
                worker.breaker.failure()
                self.suspect(worker)
                return f"{worker.id}: lost before the first frame ({type(exc).__name__})"
            if first is None:
                worker.breaker.failure()
                return f"{worker.id}: empty stream"
            if p.line_type(first) == "error":
                frame = p.decode_frame(first)
                code = frame.error_code if isinstance(frame, p.ErrorFrame) else None
                if code is not None and code.retryable:
                    self._verdict(worker, code)
                    return f"{worker.id}: {code} before the first chunk"
            committed = True
            return UpstreamStream(self, worker, response, reader, first, deadline)
        finally:
            if not committed:
                worker.local_inflight -= 1
                if response is not None:
                    await response.aclose()

    async def _refused(self, worker: Worker, response: httpx.Response) -> str:
        """A non-200 answer: 4xx is the client's problem (raised); the rest moves on."""
        status = response.status_code
        try:
            raw = await response.aread()
        except httpx.HTTPError:
            raw = b""
        err: dict[str, Any] = {}
        try:
            err = json.loads(raw).get("error") or {}
        except (ValueError, AttributeError):
            pass
        code = p.ErrorCode.of(err.get("code"), status)
        if code.request_fault:  # the request is wrong: no other worker would take it either
            worker.breaker.success()
            raise p.RequestError(code, str(err.get("message") or f"Worker refused: HTTP {status}"),
                                 param=err.get("param"))
        if response.headers.get(p.HEADER_RETRY_AFTER) is not None or status in (429, 503):
            retry_after = _retry_after(response.headers.get(p.HEADER_RETRY_AFTER))
            worker.cooldown_until = time.monotonic() + retry_after
        if code.retryable:
            self._verdict(worker, code)
        else:  # a worker refusing what only the gateway decides (auth, routes): misconfigured
            worker.breaker.failure()
        return f"{worker.id}: HTTP {status} {code}"

    @staticmethod
    def _verdict(worker: Worker, code: p.ErrorCode) -> None:
        """The breaker's verdict on a worker for an error it produced."""
        if code.endpoint_fault:
            worker.breaker.failure()
        else:
            worker.breaker.release_trial()


def _retry_after(value: str | None) -> float:
    try:
        return min(_RETRY_AFTER_CAP_S, max(0.0, float(value))) if value else 1.0
    except ValueError:
        return 1.0
