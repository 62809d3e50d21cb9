"""The circuit breaker shared by the SDK (per endpoint) and the gateway (per worker).

closed -> (`failures` consecutive failures) -> open -> (`reset_s`) -> half-open: one trial
request; its success closes the breaker, its failure opens it again for another `reset_s`.
A trial that ends with neither verdict (a cancelled hedge, a client that went away) gives its
permit back. Plain synchronous state with an injectable clock, so tests need no I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

BreakerState = Literal["closed", "open", "half_open"]
CLOSED: BreakerState = "closed"
OPEN: BreakerState = "open"
HALF_OPEN: BreakerState = "half_open"


class CircuitBreaker:
    def __init__(self, failures: int, reset_s: float, clock: Callable[[], float] = time.monotonic):
        if failures < 1:
            raise ValueError("a breaker needs a failure threshold of at least 1")
        self.threshold = failures
        self.reset_s = reset_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_out = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return CLOSED
        if self._clock() - self._opened_at >= self.reset_s:
            return HALF_OPEN
        return OPEN

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def available(self) -> bool:
        """May a new request go through now (without taking the half-open trial)?"""
        st = self.state
        return st == CLOSED or (st == HALF_OPEN and not self._trial_out)

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a trial through (0 when it would now)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self.reset_s - self._clock())

    def acquire(self) -> None:
        """Called when a request is sent through; takes the half-open trial if that is the state."""
        if self.state == HALF_OPEN:
            self._trial_out = True

    def success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial_out = False

    def failure(self) -> None:
        self._trial_out = False
        self._failures += 1
        if self._opened_at is not None or self._failures >= self.threshold:
            self._opened_at = self._clock()  # opens, or re-opens after a failed trial

    def release_trial(self) -> None:
        """A trial that ended with neither verdict: the next request may take it."""
        self._trial_out = False
