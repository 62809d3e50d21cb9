"""`orpheus_tts.routing.Router` on its own, with a hand-driven clock."""

from __future__ import annotations

import pytest

from orpheus_tts.errors import CircuitOpenError
from orpheus_tts.routing import Router


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(urls=("a", "b"), **kw) -> tuple[Router, Clock]:
    clock = Clock()
    return Router(urls, clock=clock, **kw), clock


def test_unknown_endpoints_tie_and_keep_url_order():
    router, _ = make(("a", "b", "c"))
    ep = router.pick()
    assert ep is not None and ep.url == "a"
    router.release("a")


def test_lowest_score_wins_ttfa_and_queue():
    router, _ = make(queue_cost_ms=100, inflight_cost_ms=0)
    router.record_ttfa("a", 50)
    router.record_ttfa("b", 120)
    assert router.pick().url == "a"
    router.release("a")
    router.record_hints("a", queue_depth=1, inflight=None)  # 50 + 100 > 120
    assert router.pick().url == "b"
    router.release("b")


def test_ewma_moves_toward_new_samples():
    router, _ = make(ewma_alpha=0.5)
    router.record_ttfa("a", 100)
    router.record_ttfa("a", 200)
    assert router.snapshot()[0].ttfa_ewma_ms == 150
    router.record_slow("a", 100)  # not slower than the average: ignored
    assert router.snapshot()[0].ttfa_ewma_ms == 150
    router.record_slow("a", 350)
    assert router.snapshot()[0].ttfa_ewma_ms == 250


def test_stale_hints_are_forgotten():
    router, clock = make(queue_cost_ms=100, hint_ttl_s=10)
    router.record_hints("a", queue_depth=5, inflight=0)
    assert router.pick().url == "b"
    router.release("b")
    clock.now += 11
    assert router.pick().url == "a"


def test_own_active_attempts_spread_load():
    router, _ = make(inflight_cost_ms=10)
    first, second = router.pick(), router.pick()
    assert (first.url, second.url) == ("a", "b")


def test_breaker_opens_after_threshold_consecutive_failures():
    router, _ = make(("a",), failure_threshold=3, cooldown_s=5)
    for _ in range(2):
        router.pick()
        router.record_failure("a")
    router.pick()
    router.record_success("a")  # resets the count
    for _ in range(2):
        router.pick()
        router.record_failure("a")
    assert router.snapshot()[0].breaker == "closed"
    router.pick()
    router.record_failure("a")
    assert router.snapshot()[0].breaker == "open"
    assert router.pick() is None
    with pytest.raises(RuntimeError, match="Circuit open for endpoint a") as info:
        router.pick_first()
    assert isinstance(info.value, CircuitOpenError) and info.value.retry_in_s == 5


def test_half_open_allows_exactly_one_probe():
    router, clock = make(("a",), failure_threshold=1, cooldown_s=5)
    router.pick()
    router.record_failure("a")
    clock.now += 4.9
    assert router.pick() is None
    clock.now += 0.2
    assert router.snapshot()[0].breaker == "half_open"
    probe = router.pick()
    assert probe is not None and probe.breaker == "half_open"
    assert router.pick() is None  # a second probe is not allowed while one is in flight
    router.release("a")  # probe abandoned with no verdict: the permit comes back
    assert router.pick() is not None
    router.record_failure("a")  # probe failed: open again for a full cooldown
    assert router.snapshot()[0].breaker == "open" and router.pick() is None
    clock.now += 5
    router.pick()
    router.record_success("a")
    assert router.snapshot()[0].breaker == "closed"
    assert router.pick() is not None


def test_exclude_skips_tried_endpoints():
    router, _ = make(("a", "b"))
    assert router.pick(exclude=["a"]).url == "b"
    assert router.pick(exclude=["a", "b"]) is None


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError):
        Router([])
    with pytest.raises(ValueError):
        Router(["a", "a"])
    with pytest.raises(ValueError):
        Router(["a"], failure_threshold=0)
