"""The operator's metrics: what a reconcile and an autoscaler tick write, in names promtool
accepts, and nothing left of a deleted cluster."""

from __future__ import annotations

from prometheus_client import generate_latest

from orpheus_operator.metrics import OperatorMetrics
from tests.support.promtool import check_metrics


def test_reconcile_and_ticks_write_bounded_series_promtool_accepts() -> None:
    m = OperatorMetrics()
    m.observe_workers("tts", "demo", replicas=3, ready=2)
    m.observe_tick("tts", "demo", desired=3, direction=1)
    m.observe_tick("tts", "demo", desired=3, direction=0)
    m.observe_unavailable("tts", "demo")
    text = generate_latest(m.registry).decode()
    labels = 'cluster="demo",namespace="tts"'  # the exposition sorts label names
    assert f"orpheus_operator_worker_replicas{{{labels}}} 3.0" in text
    assert f"orpheus_operator_worker_ready_replicas{{{labels}}} 2.0" in text
    assert f"orpheus_operator_autoscaler_desired_replicas{{{labels}}} 3.0" in text
    assert 'orpheus_operator_autoscaler_decisions_total{cluster="demo",direction="up",namespace="tts"} 1.0' in text
    assert 'orpheus_operator_autoscaler_decisions_total{cluster="demo",direction="hold",namespace="tts"} 1.0' in text
    assert f"orpheus_operator_autoscaler_signal_errors_total{{{labels}}} 1.0" in text
    assert check_metrics(text) == ""


def test_a_deleted_cluster_leaves_no_series() -> None:
    m = OperatorMetrics()
    m.observe_workers("tts", "demo", replicas=1, ready=1)
    m.observe_workers("tts", "other", replicas=1, ready=1)
    m.observe_tick("tts", "demo", desired=2, direction=1)
    m.observe_unavailable("tts", "demo")
    m.forget("tts", "demo")
    m.forget("tts", "never-seen")  # idempotent, unknown clusters are fine
    text = generate_latest(m.registry).decode()
    assert 'cluster="demo"' not in text
    assert 'cluster="other"' in text
