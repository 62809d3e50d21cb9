"""Which worker gets a stream: least loaded of two random healthy workers, behind breakers.

A worker's load is what this gateway knows for sure (its own streams to it) combined with the
hints the worker reports (`/v1/system`, response headers, `metrics` frames), divided by its
capacity when it reports one.

`WorkerPool.lease()` is the only way a request holds a worker: the `Lease` counts the request in
the worker's `local_inflight`, takes the breaker's half-open trial if that is the state, and
gives exactly one verdict when it ends (success, a failure, or neither), however it ends.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from orpheus_tts.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from orpheus_tts.protocol import ErrorCode, LoadHints, SystemSnapshot, WorkerState

BREAKER_STATE_VALUE = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}


def worker_id_for(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc or url


@dataclass
class Worker:
    url: str
    id: str
    breaker: CircuitBreaker
    ready: bool = True  # from discovery and /v1/system; not-ready workers get no new streams
    reachable: bool = True  # the last /v1/system poll answered
    local_inflight: int = 0  # streams this gateway has open to it
    hint_inflight: int = 0
    hint_queue_depth: int = 0
    capacity: int | None = None
    voices: list[str] = field(default_factory=list)
    model: str | None = None
    name: str | None = None  # the worker's own id (X-Orpheus-Worker / metrics frames)
    cooldown_until: float = 0.0  # after a 503/429 with Retry-After

    def load(self) -> float:
        busy = max(self.local_inflight, self.hint_inflight) + self.hint_queue_depth
        return busy / self.capacity if self.capacity else float(busy)

    def state(self) -> WorkerState:
        return WorkerState(
            id=self.id, url=self.url, ready=self.ready and self.reachable,
            inflight=max(self.local_inflight, self.hint_inflight),
            queue_depth=self.hint_queue_depth, capacity=self.capacity,
            breaker=self.breaker.state,  # type: ignore[arg-type]
        )

    def polled(self, snap: SystemSnapshot | None) -> None:
        """The answer to a `/v1/system` poll; None when there was none (unreachable)."""
        self.reachable = snap is not None
        if snap is None:
            return
        self.ready = snap.ready
        self.update_hints(inflight=snap.inflight, queue_depth=snap.queue_depth,
                          capacity=snap.capacity)
        self.voices = list(snap.voices)
        self.model = snap.model
        if snap.worker_id:
            self.name = snap.worker_id

    def update_hints(self, *, inflight: int | None = None, queue_depth: int | None = None,
                     capacity: int | None = None) -> None:
        if inflight is not None and inflight >= 0:
            self.hint_inflight = int(inflight)
        if queue_depth is not None and queue_depth >= 0:
            self.hint_queue_depth = int(queue_depth)
        if capacity is not None and capacity > 0:
            self.capacity = int(capacity)


class Lease:
    """One request's hold on one worker, from `WorkerPool.lease()` to its verdict.

    Exactly one of `succeeded()`, `failed(code)` or `release()` takes effect (the first one
    called; the others do nothing), so every exit path may call one without double counting.
    """

    __slots__ = ("worker", "_pool", "_accepted", "_ended")

    def __init__(self, pool: WorkerPool, worker: Worker):
        self.worker = worker
        self._pool = pool
        self._accepted = False
        self._ended = False
        worker.local_inflight += 1

    @property
    def ended(self) -> bool:
        return self._ended

    def accepted(self) -> None:
        """The worker took the stream (HTTP 200): its own inflight count includes it now."""
        self._accepted = True

    def note_hints(self, hints: LoadHints) -> None:
        """Load hints the worker sent with this request (headers or a `metrics` frame)."""
        self.worker.update_hints(inflight=hints.inflight, queue_depth=hints.queue_depth)
        if hints.worker_id:
            self.worker.name = hints.worker_id

    def cool_down(self, seconds: float) -> None:
        """The worker asked not to be sent anything for `seconds` (`Retry-After`)."""
        self.worker.cooldown_until = self._pool.now() + seconds

    def succeeded(self) -> None:
        if self._end():
            self.worker.breaker.success()

    def failed(self, code: ErrorCode, *, blame: bool | None = None) -> None:
        """The request failed with `code`: a failure for the breaker when the code is an
        endpoint fault (or `blame` says so); a lost worker is also suspected unreachable."""
        if not self._end():
            return
        if code.endpoint_fault if blame is None else blame:
            self.worker.breaker.failure()
        else:
            self.worker.breaker.release_trial()
        if code is ErrorCode.UPSTREAM_LOST:
            self._pool.suspect(self.worker)

    def release(self) -> None:
        """Ended with no verdict on the worker's health (client gone, deadline)."""
        if self._end():
            self.worker.breaker.release_trial()

    def _end(self) -> bool:
        if self._ended:
            return False
        self._ended = True
        worker = self.worker
        worker.local_inflight -= 1
        if self._accepted:  # the worker's reported inflight counted it; do not wait for a poll
            worker.hint_inflight = max(0, worker.hint_inflight - 1)
        return True


class WorkerPool:
    """The current set of workers and the choice among them."""

    def __init__(self, breaker_failures: int = 3, breaker_reset_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None,
                 on_suspect: Callable[[Worker], None] = lambda w: None):
        self._workers: dict[str, Worker] = {}
        self._breaker_failures = breaker_failures
        self._breaker_reset_s = breaker_reset_s
        self._clock = clock
        self._rng = rng or random.Random()
        self._on_suspect = on_suspect

    def now(self) -> float:
        return self._clock()

    def suspect(self, worker: Worker) -> None:
        """A connection to `worker` failed: no new streams for it until a poll answers."""
        worker.reachable = False
        self._on_suspect(worker)

    def lease(self, exclude: set[str] = frozenset()) -> Lease | None:  # type: ignore[assignment]
        """Hold the worker `pick()` chooses, or None when none is eligible."""
        worker = self.pick(exclude)
        return Lease(self, worker) if worker is not None else None

    def __iter__(self):
        return iter(list(self._workers.values()))

    def __len__(self) -> int:
        return len(self._workers)

    def local_inflight(self) -> int:
        """Streams this gateway has open to its workers."""
        return sum(w.local_inflight for w in self._workers.values())

    def get(self, url: str) -> Worker | None:
        return self._workers.get(url)

    def set_workers(self, workers: Iterable[tuple[str, str | None]]) -> None:
        """Replace the set with `(url, id)` pairs: known workers keep their state, gone ones go.

        Streams already open to a removed worker keep going (they own their connection).
        """
        wanted = {url.rstrip("/"): wid for url, wid in workers}
        for url in list(self._workers):
            if url not in wanted:
                del self._workers[url]
        for url, wid in wanted.items():
            if url not in self._workers:
                self._workers[url] = Worker(
                    url=url, id=wid or worker_id_for(url),
                    breaker=CircuitBreaker(self._breaker_failures, self._breaker_reset_s, self._clock))

    def eligible(self, exclude: set[str] = frozenset(),  # type: ignore[assignment]
                 include_unreachable: bool = False) -> list[Worker]:
        now = self._clock()
        return [w for w in self._workers.values()
                if w.url not in exclude and w.ready and (w.reachable or include_unreachable)
                and w.cooldown_until <= now and w.breaker.available()]

    def pick(self, exclude: set[str] = frozenset()) -> Worker | None:  # type: ignore[assignment]
        """Power of two choices: the less loaded of two random eligible workers.

        Workers whose last poll or connection failed are tried only when no other is left
        (their breaker still guards them): a failed attempt costs little, and a lone worker
        that dropped one connection should not refuse the next request.
        """
        candidates = self.eligible(exclude) or self.eligible(exclude, include_unreachable=True)
        if not candidates:
            return None
        if len(candidates) == 1:
            chosen = candidates[0]
        else:
            a, b = self._rng.sample(candidates, 2)
            chosen = a if a.load() <= b.load() else b
        chosen.breaker.acquire()
        return chosen

    def retry_after_s(self) -> float:
        """When a worker might be available again (for `Retry-After` on a 503)."""
        now = self._clock()
        waits = [w.cooldown_until - now for w in self._workers.values() if w.cooldown_until > now]
        waits += [self._breaker_reset_s for w in self._workers.values() if w.breaker.state == OPEN]
        return max(1.0, min(waits)) if waits else 1.0
