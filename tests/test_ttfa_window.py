"""The recent time-to-first-audio window a worker's and a gateway's `/v1/system` report."""

from orpheus_tts.ttfa_window import TtfaWindow, percentiles
from tests.support.clock import Clock


def test_samples_older_than_the_window_leave_it():
    clock = Clock()
    window = TtfaWindow(30.0, clock=clock)
    window.add(500.0)
    clock.t += 20
    window.add(100.0)
    assert window.values() == [500.0, 100.0]
    clock.t += 15  # the first sample is now 35 s old
    assert window.values() == [100.0]
    clock.t += 30
    assert window.values() == [] and window.percentiles() == (None, None)


def test_the_window_is_bounded():
    window = TtfaWindow(60.0, clock=Clock(), max_samples=3)
    for v in (1.0, 2.0, 3.0, 4.0, 5.0):
        window.add(v)
    assert window.values() == [3.0, 4.0, 5.0]


def test_percentiles_are_nearest_rank_p50_and_p95():
    assert percentiles([]) == (None, None)
    assert percentiles([7.0]) == (7.0, 7.0)
    assert percentiles([float(v) for v in range(100, 0, -1)]) == (51.0, 95.0)


def test_worker_metrics_report_the_window():
    from orpheus_worker.metrics import WorkerMetrics

    metrics = WorkerMetrics(window_s=45.0)
    assert metrics.ttfa_percentiles() == (None, None)
    for seconds in (0.2, 0.1, 0.3):
        metrics.observe_ttfa(seconds)
    assert metrics.window_s == 45.0
    p50, p95 = metrics.ttfa_percentiles()
    assert round(p50) == 200 and round(p95) == 300
    assert metrics.ttfa.collect()[0].samples  # the histogram got them too
