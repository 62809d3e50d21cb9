"""The recent time-to-first-audio samples a worker's or a gateway's `/v1/system` reports as
p50/p95 (the autoscaler's latency signal)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class TtfaWindow:
    """Time-to-first-audio samples (ms) of the last `window_s` seconds, at most `max_samples`."""

    def __init__(self, window_s: float, clock: Callable[[], float] = time.monotonic,
                 max_samples: int = 10_000):
        self.window_s = window_s
        self._clock = clock
        self._samples: deque[tuple[float, float]] = deque(maxlen=max_samples)

    def add(self, ttfa_ms: float) -> None:
        self._samples.append((self._clock(), ttfa_ms))

    def values(self) -> list[float]:
        """The samples of the last `window_s` seconds."""
        cutoff = self._clock() - self.window_s
        while self._samples and self._samples[0][0] < cutoff:
            self._samples.popleft()
        return [v for _, v in self._samples]

    def percentiles(self) -> tuple[float | None, float | None]:
        return percentiles(self.values())


def percentiles(samples: list[float]) -> tuple[float | None, float | None]:
    """p50 and p95 of `samples` (None, None when there are none)."""
    values = sorted(samples)
    if not values:
        return None, None

    def pct(p: float) -> float:
        return values[min(len(values) - 1, int(round(p * (len(values) - 1))))]

    return pct(0.50), pct(0.95)
