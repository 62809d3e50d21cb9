"""The simulator: determinism, the capacity model's consequences, and the baselines' rules."""

from __future__ import annotations

import pytest

from benchmarks import autoscale_sim as sim
from orpheus_operator.autoscaler.policy import Signals

SHORT = 600  # seconds; the benchmark runs an hour


class Fixed:
    """A policy that never changes the count (the control for the capacity model)."""

    name = "fixed"
    interval_s = 10.0

    def tick(self, signals: Signals, current: int) -> int:
        return current


class StepTo:
    """Asks for `n` workers at its first tick, then holds."""

    name = "step-to"
    interval_s = 10.0

    def __init__(self, n: int):
        self.n = n

    def tick(self, signals: Signals, current: int) -> int:
        return self.n


def test_same_seed_same_result() -> None:
    scenario = sim.Scenario()
    a = sim.simulate(sim.burst(7, SHORT), scenario.ours(), initial_replicas=3)
    b = sim.simulate(sim.burst(7, SHORT), scenario.ours(), initial_replicas=3)
    assert a.summary() == b.summary()
    assert (a.replicas, a.ready, a.p95_ms) == (b.replicas, b.ready, b.p95_ms)


def test_different_seeds_differ() -> None:
    assert sim.diurnal(1, SHORT).rates != sim.diurnal(2, SHORT).rates
    model = sim.CapacityModel()
    assert sim.steady(1, SHORT).requests(model) != sim.steady(2, SHORT).requests(model)


def test_trace_shapes() -> None:
    step = sim.step(0, 400, low=2.0, high=8.0)
    assert step.rates[0] == 2.0 and step.rates[200] == 8.0 and step.rates[399] == 2.0
    burst = sim.burst(3, 3600, base=3.0)
    assert min(burst.rates) == 3.0 and max(burst.rates) >= 3.0 * 2.9
    requests = sim.steady(1, 1000, rate=5.0).requests(sim.CapacityModel())
    assert 4500 < len(requests) < 5500  # Poisson at 5/s for 1000 s
    assert all(a <= b for (a, _), (b, _) in zip(requests, requests[1:]))


def test_too_few_workers_violate_and_enough_do_not() -> None:
    trace = sim.steady(1, SHORT, rate=6.0)  # ~31 streams in flight on average
    starved = sim.simulate(trace, Fixed(), initial_replicas=2)
    ample = sim.simulate(trace, Fixed(), initial_replicas=10)
    assert starved.slo_violation_s > SHORT / 2
    assert ample.slo_violation_s == 0
    assert ample.worker_seconds == pytest.approx(10 * SHORT)


def test_new_workers_serve_only_after_the_cold_start() -> None:
    model = sim.CapacityModel(cold_start_s=60.0, cold_start_jitter_s=0.0)
    result = sim.simulate(sim.steady(1, 300, rate=1.0), StepTo(5), model, initial_replicas=1)
    assert result.replicas[0] == 5
    assert result.ready[59] == 1 and result.ready[61] == 5
    assert result.scale_events == 1 and result.reversals == 0


def test_our_policy_follows_a_step_up_and_back_down() -> None:
    scenario = sim.Scenario()
    trace = sim.step(2, 1800, low=2.0, high=9.0)
    result = sim.simulate(trace, scenario.ours(), scenario.model,
                          initial_replicas=scenario.initial_replicas(trace))
    low, high = result.replicas[400], result.replicas[1300]
    assert high >= scenario.model.workers_for(9.0, 1.0)  # enough for the high rate
    assert result.replicas[-1] < high  # and came back down


# --- baselines ---------------------------------------------------------------------------------
def obs(t: float, queue: int = 0, inflight: int = 0) -> Signals:
    return Signals(time=t, queue_depth=queue, inflight=inflight, ready_workers=1)


def test_hpa_tolerance_and_formula() -> None:
    hpa = sim.HPAQueuePolicy(1, 50, target_queue_per_replica=2.0)
    assert hpa.tick(obs(0, queue=21), 10) == 10  # ratio 1.05: inside the 10 % band
    assert hpa.tick(obs(15, queue=30), 10) == 15  # ceil(10 * 30 / 20)


def test_hpa_scale_up_rate_limit() -> None:
    hpa = sim.HPAQueuePolicy(1, 100, target_queue_per_replica=1.0)
    assert hpa.tick(obs(0, queue=90), 2) == 6  # max(2 x 2, 2 + 4)
    assert hpa.tick(obs(15, queue=90), 10) == 20  # max(2 x 10, 10 + 4)


def test_hpa_scale_down_stabilization_window() -> None:
    hpa = sim.HPAQueuePolicy(1, 50, target_queue_per_replica=2.0)
    assert hpa.tick(obs(0, queue=40), 10) == 20
    assert hpa.tick(obs(15, queue=0), 20) == 20  # the 20 from t=0 is still in the window
    assert hpa.tick(obs(299, queue=0), 20) == 20
    assert hpa.tick(obs(300, queue=0), 20) == 1  # 100 % per period: straight to min


def test_kubeai_moving_average_and_consecutive_downs() -> None:
    kubeai = sim.KubeAIPolicy(1, 20, target_requests=4.0, interval_s=10.0, time_window_s=40.0,
                              scale_down_delay_s=20.0)
    assert kubeai.tick(obs(0, inflight=16), 4) == 4  # window warmed at 16: ceil(16/4)
    assert kubeai.tick(obs(10, inflight=32), 4) == 5  # avg(16,16,16,32) = 20
    assert kubeai.tick(obs(20, inflight=0), 5) == 5  # avg 16 -> 4: first lower result
    assert kubeai.tick(obs(30, inflight=0), 5) == 5  # second
    assert kubeai.tick(obs(40, inflight=0), 5) == 2  # third: avg(32,0,0,0)=8 -> 2


def test_compare_runs_every_policy_on_every_trace() -> None:
    traces = [sim.steady(1, 300), sim.burst(1, 900)]
    results = sim.compare(traces)
    assert [(r.trace, r.policy) for r in results] == [
        (t.name, p) for t in traces for p in ("ours", "hpa-queue", "kubeai")]
