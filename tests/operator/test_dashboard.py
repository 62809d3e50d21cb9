"""The Grafana dashboard: generated from code, every query on a metric the code exports, every
query valid PromQL (promtool), and shipped in the chart for Grafana's dashboard sidecar."""

from __future__ import annotations

import json

from orpheus_operator import dashboard
from tests.operator.helm_render import render
from tests.support.promtool import check_queries


def panels(model: dict) -> list[dict]:
    return [p for p in model["panels"] if p["type"] != "row"]


def test_chart_file_is_what_the_code_generates() -> None:
    assert dashboard.CHART_FILE.read_text() == dashboard.render(), "run make dashboard"


def test_every_panel_queries_only_exported_metrics() -> None:
    exported = dashboard.exported_metric_names()
    model = json.loads(dashboard.CHART_FILE.read_text())
    for panel in panels(model):
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = dashboard.metric_names(target["expr"])
            assert names, f"{panel['title']}: {target['expr']} queries no Orpheus metric"
            assert names <= exported, f"{panel['title']}: nobody exports {names - exported}"


def test_the_check_catches_a_metric_nobody_exports() -> None:
    exported = dashboard.exported_metric_names()
    renamed = "rate(orpheus_worker_rtf_bucket[5m])"  # the worker's old name for the RTF
    assert not dashboard.metric_names(renamed) <= exported
    assert "orpheus_worker_real_time_factor_bucket" in exported
    assert "orpheus_operator_autoscaler_decisions_total" in exported


def test_every_query_is_valid_promql() -> None:
    exprs = {f"q{i}:check": q.expr.replace("$__rate_interval", "5m")
             for i, q in enumerate(dashboard.queries())}
    assert check_queries(exprs) == ""
    assert check_queries({"bad:check": "sum(rate(orpheus_gateway_requests_total[5m])"}) != ""


def test_the_panels_operators_asked_for() -> None:
    exprs = " ".join(q.expr for q in dashboard.queries())
    for q in ("0.5", "0.95", "0.99"):  # TTFA p50/p95/p99
        assert f"histogram_quantile({q}, sum by (le) (rate(orpheus_gateway_ttfa_seconds_bucket" \
            in exprs
    for metric in ("orpheus_worker_real_time_factor_bucket", "orpheus_gateway_streams_inflight",
                   "orpheus_gateway_queue_depth", "orpheus_gateway_rate_limit_rejections_total",
                   "orpheus_gateway_breaker_state", "orpheus_operator_worker_replicas",
                   "orpheus_operator_autoscaler_decisions_total"):
        assert metric in exprs, metric
    model = dashboard.build()
    breakers = next(p for p in panels(model) if p["title"] == "Circuit breakers")
    assert breakers["type"] == "state-timeline"
    texts = {k: v["text"] for k, v in breakers["fieldConfig"]["defaults"]["mappings"][0]
             ["options"].items()}
    assert texts == {"0": "closed", "1": "half-open", "2": "open"}
    assert len({p["id"] for p in model["panels"]}) == len(model["panels"])


def test_chart_ships_the_dashboard_for_the_grafana_sidecar() -> None:
    assert not [o for o in render() if o["kind"] == "ConfigMap"
                and o["metadata"]["name"].endswith("-dashboard")]  # opt-in
    objects = render({"grafanaDashboard": {"enabled": True}})
    (cm,) = [o for o in objects if o["kind"] == "ConfigMap"
             and o["metadata"]["name"].endswith("-dashboard")]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["orpheus-tts.json"]) == json.loads(
        dashboard.CHART_FILE.read_text())
