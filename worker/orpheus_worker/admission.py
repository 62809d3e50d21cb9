"""Admission control: a cap on concurrent streams and a bounded FIFO wait queue.

`admit()` decides at once: a `Ticket` (a slot now or a place in the queue), or a `RequestError`
(429 `overloaded` when the queue is full, 503 `draining` once draining started). The ticket's
owner awaits `ticket.wait()` for the slot and calls `ticket.release()` exactly once in a
`finally` (release is idempotent, and releasing a queued ticket leaves the queue).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from orpheus_tts.protocol import ErrorCode, RequestError


class Ticket:
    def __init__(self, admission: Admission):
        self._admission = admission
        self._granted = asyncio.get_running_loop().create_future()
        self.created = time.monotonic()
        self.granted_at: float | None = None
        self.released = False

    @property
    def granted(self) -> bool:
        return self.granted_at is not None

    def _grant(self) -> None:
        if not self._granted.done():
            self.granted_at = time.monotonic()
            self._granted.set_result(None)

    async def wait(self) -> float:
        """Wait for a slot; returns the seconds spent queued."""
        await asyncio.shield(self._granted)
        assert self.granted_at is not None
        return self.granted_at - self.created

    def _fail(self, exc: BaseException) -> None:
        if not self._granted.done():
            self._granted.set_exception(exc)

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        self._admission._release(self)


class Admission:
    def __init__(self, capacity: int, max_queue: int, retry_after_s: float = 1.0):
        if capacity < 1 or max_queue < 0:
            raise ValueError("capacity must be >= 1 and max_queue >= 0")
        self.capacity = capacity
        self.max_queue = max_queue
        self.retry_after_s = retry_after_s
        self.inflight = 0
        self.draining = False
        self._queue: deque[Ticket] = deque()

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    def admit(self) -> Ticket:
        if self.draining:
            raise RequestError(ErrorCode.DRAINING, "Worker is draining; retry on another worker.",
                               retry_after_s=self.retry_after_s)
        ticket = Ticket(self)
        if self.inflight < self.capacity and not self._queue:
            self.inflight += 1
            ticket._grant()
        elif len(self._queue) < self.max_queue:
            self._queue.append(ticket)
        else:
            raise RequestError(
                ErrorCode.OVERLOADED,
                f"Worker is at capacity ({self.capacity} streams, {self.max_queue} queued).",
                retry_after_s=self.retry_after_s,
            )
        return ticket

    def fail_queued(self, exc: BaseException) -> int:
        """Fail every waiting ticket with `exc` (end of a drain); returns how many."""
        failed = 0
        while self._queue:
            self._queue.popleft()._fail(exc)
            failed += 1
        return failed

    def _release(self, ticket: Ticket) -> None:
        if ticket.granted:
            self.inflight -= 1
        elif ticket in self._queue:
            self._queue.remove(ticket)
            ticket._granted.cancel()
            return
        elif not ticket._granted.done():
            ticket._granted.cancel()
        while self._queue and self.inflight < self.capacity:
            nxt = self._queue.popleft()
            self.inflight += 1
            nxt._grant()
