"""The Grafana dashboard, generated from code (`python -m orpheus_operator.dashboard`).

`PANELS` is the dashboard as plain data: rows of panels, each with its PromQL. `build()` turns
it into Grafana's JSON model through grafana-foundation-sdk (the dev extra); the output lives
in the chart (`charts/orpheus-operator/dashboards/orpheus-tts.json`), where an optional
ConfigMap carries it to Grafana's dashboard sidecar. `exported_metric_names()` lists every
series name the gateway, worker and operator export, so a test can check each query against it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from orpheus_tts.protocol import ErrorCode

DASHBOARD_UID = "orpheus-tts"
CHART_FILE = (Path(__file__).resolve().parents[2] / "charts" / "orpheus-operator" / "dashboards"
              / "orpheus-tts.json")
RATE = "$__rate_interval"
METRIC_NAME = re.compile(r"\borpheus_[a-z0-9_]+")


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class PanelSpec:
    title: str
    description: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: str = "timeseries"  # or "state" (a state timeline of a 0/1/2 gauge)
    width: int = 8


@dataclass(frozen=True)
class RowSpec:
    title: str
    panels: tuple[PanelSpec, ...] = field(default_factory=tuple)


def _quantiles(metric: str, *qs: float, by: str = "") -> tuple[Query, ...]:
    group = f"le{', ' + by if by else ''}"
    suffix = f" {{{{{by}}}}}" if by else ""
    return tuple(
        Query(f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket[{RATE}])))",
              f"p{round(q * 100)}{suffix}")
        for q in qs)


_REFUSALS = "|".join([ErrorCode.OVERLOADED, ErrorCode.DRAINING, ErrorCode.NO_WORKERS])

PANELS: tuple[RowSpec, ...] = (
    RowSpec("Latency", (
        PanelSpec("Time to first audio (gateway)",
                  "Request arrival at the gateway to the first audio byte sent to the client.",
                  _quantiles("orpheus_gateway_ttfa_seconds", 0.5, 0.95, 0.99), "s"),
        PanelSpec("Time to first audio (worker, p95 by API)",
                  "The gateway's p95 by API (v1, openai, ws) and the workers' own p95 "
                  "(stream accepted to first PCM chunk).",
                  _quantiles("orpheus_gateway_ttfa_seconds", 0.95, by="api")
                  + (Query("histogram_quantile(0.95, sum by (le) "
                           f"(rate(orpheus_worker_ttfa_seconds_bucket[{RATE}])))",
                           "worker p95"),), "s"),
        PanelSpec("Real-time factor",
                  "Wall seconds per audio second of each stream (below 1: faster than real "
                  "time).",
                  _quantiles("orpheus_worker_real_time_factor", 0.5, 0.95)),
    )),
    RowSpec("Load", (
        PanelSpec("Streams in flight", "Streams open through the gateway and on the workers, "
                  "against the capacity the ready workers report.", (
                      Query("sum(orpheus_gateway_streams_inflight)", "gateway"),
                      Query("sum(orpheus_worker_streams_inflight)", "workers"),
                      Query("sum(orpheus_gateway_capacity)", "capacity"),
                  )),
        PanelSpec("Queue depth", "Requests waiting: in the gateway plus the workers' admission "
                  "queues, and the workers' part alone.", (
                      Query("sum(orpheus_gateway_queue_depth)", "gateway + workers"),
                      Query("sum(orpheus_worker_queue_depth)", "workers"),
                  )),
        PanelSpec("Requests and audio", "Stream requests per second by API, and seconds of "
                  "audio produced per second (= real-time streams being served).", (
                      Query(f"sum by (api) (rate(orpheus_gateway_requests_total[{RATE}]))",
                            "requests/s {{api}}"),
                      Query(f"sum(rate(orpheus_worker_audio_seconds_total[{RATE}]))",
                            "audio s/s"),
                  )),
    )),
    RowSpec("Refusals and failures", (
        PanelSpec("Admission refusals", "Requests refused for capacity: workers full or "
                  "draining, no worker, and the gateway's per-key rate limits.", (
                      Query(f'sum by (code) (rate(orpheus_worker_errors_total{{code=~"{_REFUSALS}"}}'
                            f"[{RATE}]))", "worker {{code}}"),
                      Query(f'sum by (code) (rate(orpheus_gateway_errors_total{{code=~"{_REFUSALS}"}}'
                            f"[{RATE}]))", "gateway {{code}}"),
                      Query("sum by (limit) "
                            f"(rate(orpheus_gateway_rate_limit_rejections_total[{RATE}]))",
                            "rate limit {{limit}}"),
                  ), "reqps"),
        PanelSpec("Errors and failovers", "Errors returned to clients by code, and requests "
                  "moved to another worker before their first byte.", (
                      Query(f"sum by (code) (rate(orpheus_gateway_errors_total[{RATE}]))",
                            "{{code}}"),
                      Query(f"sum(rate(orpheus_gateway_upstream_failovers_total[{RATE}]))",
                            "failovers"),
                  ), "reqps"),
        PanelSpec("Circuit breakers", "The gateway's breaker per worker id: closed, half-open "
                  "or open.", (
                      Query("max by (worker_id) (orpheus_gateway_breaker_state)",
                            "{{worker_id}}"),
                  ), kind="state"),
    )),
    RowSpec("Workers and autoscaling", (
        PanelSpec("Worker replicas", "The worker Deployment's replicas and ready replicas (from "
                  "the operator), the autoscaler's decision, and the workers the gateway routes "
                  "to.", (
                      Query("sum by (cluster) (orpheus_operator_worker_replicas)",
                            "replicas {{cluster}}"),
                      Query("sum by (cluster) (orpheus_operator_worker_ready_replicas)",
                            "ready {{cluster}}"),
                      Query("sum by (cluster) (orpheus_operator_autoscaler_desired_replicas)",
                            "desired {{cluster}}"),
                      Query("sum(orpheus_gateway_workers_ready)", "gateway: ready workers"),
                  )),
        PanelSpec("Autoscaler decisions", "Scale-ups and scale-downs per interval, and ticks "
                  "that could not read their signals.", (
                      Query("sum by (cluster, direction) (increase("
                            'orpheus_operator_autoscaler_decisions_total{direction!="hold"}'
                            f"[{RATE}]))", "{{direction}} {{cluster}}"),
                      Query("sum by (cluster) (increase("
                            f"orpheus_operator_autoscaler_signal_errors_total[{RATE}]))",
                            "signal errors {{cluster}}"),
                  )),
        PanelSpec("Codec and engine", "Windows per SNAC decode call (p50, p95) and tokens "
                  "generated per second.", (
                      *_quantiles("orpheus_worker_snac_batch_size", 0.5, 0.95),
                      Query(f"sum(rate(orpheus_worker_generated_tokens_total[{RATE}]))",
                            "tokens/s"),
                  )),
    )),
)


def queries() -> list[Query]:
    return [q for row in PANELS for panel in row.panels for q in panel.queries]


def metric_names(expr: str) -> set[str]:
    return set(METRIC_NAME.findall(expr))


def exported_metric_names() -> set[str]:
    """Every series name the gateway, worker and operator registries expose."""
    from orpheus_gateway.metrics import GatewayMetrics
    from orpheus_worker.metrics import WorkerMetrics

    from .metrics import OperatorMetrics

    names: set[str] = set()
    for registry in (GatewayMetrics().registry, WorkerMetrics().registry,
                     OperatorMetrics().registry):
        for family in registry.collect():
            suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"),
                        "gauge": ("",)}[family.type]
            names.update(family.name + s for s in suffixes)
    return names


def build() -> dict:
    """The dashboard's JSON model."""
    from grafana_foundation_sdk.builders import common as cb
    from grafana_foundation_sdk.builders import dashboard as d
    from grafana_foundation_sdk.builders import prometheus, statetimeline, timeseries
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models import common as c
    from grafana_foundation_sdk.models import dashboard as m

    datasource = m.DataSourceRef(type_val="prometheus", uid="${datasource}")
    builder = (
        d.Dashboard("Orpheus TTS")
        .uid(DASHBOARD_UID)
        .description("Gateway, workers and operator of Orpheus TTS clusters "
                     "(generated by orpheus_operator/dashboard.py; docs/observability.md).")
        .tags(["orpheus-tts", "generated"])
        .refresh("30s")
        .time("now-1h", "now")
        .tooltip(m.DashboardCursorSync.CROSSHAIR)
        .with_variable(d.DatasourceVariable("datasource").label("Data source")
                       .type("prometheus"))
    )
    state_map = m.ValueMap(options={
        "0": m.ValueMappingResult(text="closed", color="green", index=0),
        "1": m.ValueMappingResult(text="half-open", color="yellow", index=1),
        "2": m.ValueMappingResult(text="open", color="red", index=2),
    })
    legend = (cb.VizLegendOptions().show_legend(True).display_mode(c.LegendDisplayMode.LIST)
              .placement(c.LegendPlacement.BOTTOM))
    tooltip = cb.VizTooltipOptions().mode(c.TooltipDisplayMode.MULTI).sort(c.SortOrder.NONE)
    ids = iter(range(1, 1000))
    for row in PANELS:
        builder = builder.with_row(d.Row(row.title).id(next(ids)))
        for spec in row.panels:
            panel = (statetimeline.Panel().mappings([state_map]) if spec.kind == "state"
                     else timeseries.Panel().unit(spec.unit).min(0).fill_opacity(10))
            panel = (panel.id(next(ids)).legend(legend).tooltip(tooltip)
                     .title(spec.title).description(spec.description)
                     .datasource(datasource).height(8).span(spec.width))
            for i, q in enumerate(spec.queries):
                panel = panel.with_target(
                    prometheus.Dataquery().expr(q.expr).legend_format(q.legend)
                    .ref_id(chr(ord("A") + i)).datasource(datasource))
            builder = builder.with_panel(panel)
    return json.loads(JSONEncoder(sort_keys=True, indent=2).encode(builder.build()))


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Write the Grafana dashboard into the chart.")
    ap.add_argument("-o", "--output", default=str(CHART_FILE))
    out = Path(ap.parse_args(argv).output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render())
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
