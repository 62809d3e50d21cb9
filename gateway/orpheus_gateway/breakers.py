"""Whose fault is it: a worker's circuit breakers, one for the worker and one per API key.

Some failures are the worker's whatever the request: a refused or reset connection, a
refusal the gateway cannot explain (`failure()`). They open the worker's own breaker, for
every caller. Others follow a stream: lost before or after its first frame, ended empty,
`engine_error` — and a request can cause those as well as a sick worker can (a poison request
fails on every worker it reaches). They count against the (worker, key) pair first
(`stream_failure(key)`): one key's bad requests take the worker out of that key's rotation
only. The worker's own breaker takes them too once a second key sees the worker fail with no
success in between: then the worker, not one caller, is the likely cause.

`state` is what `/v1/system` and `/metrics` report: the worker's breaker, or — while that is
closed — open (half-open) when every key that used the worker has its breaker open
(half-open), so a deployment with a single key sees its sick worker as open.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from orpheus_tts.breaker import CLOSED, HALF_OPEN, OPEN, BreakerState, CircuitBreaker

MAX_KEYS = 1024  # per worker; beyond, the longest-unused healthy key breakers are forgotten


class WorkerBreakers:
    def __init__(self, failures: int, reset_s: float,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = MAX_KEYS):
        self._make = lambda: CircuitBreaker(failures, reset_s, clock)
        self.worker = self._make()
        self._keys: OrderedDict[str, CircuitBreaker] = OrderedDict()
        self._failing: set[str] = set()  # keys with failures since their last success here
        self._max_keys = max_keys

    def _key(self, key: str) -> CircuitBreaker:
        breaker = self._keys.get(key)
        if breaker is None:
            breaker = self._keys[key] = self._make()
            if len(self._keys) > self._max_keys:
                for old, b in list(self._keys.items()):
                    if b.state == CLOSED and old not in self._failing and old != key:
                        del self._keys[old]
                        break
        self._keys.move_to_end(key)
        return breaker

    # --- routing ---------------------------------------------------------------------------
    def available(self, key: str | None = None) -> bool:
        if not self.worker.available():
            return False
        breaker = self._keys.get(key) if key is not None else None
        return breaker is None or breaker.available()

    def acquire(self, key: str | None = None) -> None:
        self.worker.acquire()
        if key is not None:
            self._key(key).acquire()

    # --- verdicts --------------------------------------------------------------------------
    def success(self, key: str | None = None) -> None:
        self.worker.success()
        if key is not None:
            self._key(key).success()
            self._failing.discard(key)

    def failure(self, key: str | None = None) -> None:
        """A fault of the worker itself: its own breaker, for everyone."""
        self.worker.failure()
        if key is not None and key in self._keys:
            self._keys[key].release_trial()

    def stream_failure(self, key: str) -> None:
        """A fault that may be the request's: the key's breaker, the worker's only when a
        second key is failing here too."""
        self._key(key).failure()
        self._failing.add(key)
        if len(self._failing) >= 2:
            self.worker.failure()
        else:
            self.worker.release_trial()

    def release_trial(self, key: str | None = None) -> None:
        """Neither verdict (a cancel, a deadline, a busy worker): give the trials back."""
        self.worker.release_trial()
        if key is not None and key in self._keys:
            self._keys[key].release_trial()

    # --- reporting -------------------------------------------------------------------------
    @property
    def state(self) -> BreakerState:
        own = self.worker.state
        if own != CLOSED or not self._keys:
            return own
        states = {b.state for b in self._keys.values()}
        if CLOSED in states:
            return CLOSED
        return OPEN if OPEN in states else HALF_OPEN

    def retry_in(self) -> float:
        return self.worker.retry_in()
