"""One autoscaler tick for one `OrpheusCluster`: observe, decide, apply, record.

- observe: the gateway's `/v1/system` (or a Prometheus source) and the worker Deployment;
- decide: `policy.decide` with the state carried in `status.autoscaler.state`;
- apply: `status.autoscaler.desiredReplicas`, then an immediate reconcile so the operator
  sets the worker Deployment's replicas from it (the operator owns the Deployment);
- record: on a change, a Kubernetes Event and an entry in `status.autoscaler.history` (the
  last `HISTORY_LENGTH` decisions with time, signals and reason); every tick refreshes
  `status.metrics` and the `ScalingActive` condition.

Everything the policy needs lives in status, so an operator restart loses nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any, Callable

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .. import crd
from ..manifests import Cluster, gateway_url, worker_name
from ..metrics import OPERATOR_METRICS, OperatorMetrics
from ..reconcile import reconcile_named
from ..status import condition, emit_event, merge_conditions, patch_status
from .policy import AutoscalingSpec, Decision, PolicyState, decide
from .signals import GatewaySource, PrometheusSource, SignalSource, SignalsUnavailable

log = logging.getLogger(__name__)

METRICS_URL_ANNOTATION = "tts.orpheus.dev/metrics-url"
PROMETHEUS_URL_ANNOTATION = "tts.orpheus.dev/prometheus-url"
HISTORY_LENGTH = 10


@dataclass
class TickResult:
    decision: Decision | None
    error: str | None = None


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def signal_source(body: dict[str, Any]) -> SignalSource:
    """The gateway Service by default; annotations point elsewhere (tests, Prometheus)."""
    annotations = body["metadata"].get("annotations") or {}
    if annotations.get(PROMETHEUS_URL_ANNOTATION):
        return PrometheusSource(annotations[PROMETHEUS_URL_ANNOTATION])
    url = annotations.get(METRICS_URL_ANNOTATION) or gateway_url(Cluster.from_body(body))
    return GatewaySource(url)


def history_entry(decision: Decision) -> dict[str, Any]:
    return {
        "time": _iso(decision.signals.time),
        "from": decision.current,
        "to": decision.desired,
        "reason": decision.reason,
        "signals": decision.signals.to_dict(),
    }


class AutoscalerController:
    """Runs ticks against the API server; `clock`, `source_for` and `apply` are injectable."""

    def __init__(
        self,
        api: client.ApiClient,
        clock: Callable[[], float],
        source_for: Callable[[dict[str, Any]], SignalSource] = signal_source,
        apply: Callable[[str, str], Any] = reconcile_named,
        metrics: OperatorMetrics = OPERATOR_METRICS,
    ):
        self.custom = client.CustomObjectsApi(api)
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)
        self.clock = clock
        self.source_for = source_for
        self.apply = apply
        self.metrics = metrics

    def _workers(self, cluster: Cluster) -> tuple[int | None, int]:
        """(requested replicas, ready replicas) of the worker Deployment, if it exists."""
        try:
            dep = self.apps.read_namespaced_deployment(worker_name(cluster.name), cluster.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None, 0
            raise
        return dep.spec.replicas, (dep.status.ready_replicas or 0) if dep.status else 0

    def tick_named(self, namespace: str, name: str) -> TickResult | None:
        """Read the cluster and tick it; None when it is gone."""
        try:
            body = self.custom.get_namespaced_custom_object(
                crd.GROUP, crd.VERSION, namespace, crd.PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                self.metrics.forget(namespace, name)
                return None
            raise
        return self.tick(body)

    def tick(self, body: dict[str, Any]) -> TickResult:
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        cluster = Cluster.from_body(body)
        spec = AutoscalingSpec.from_resource(cluster.spec)
        status = body.get("status") or {}
        saved = status.get("autoscaler") or {}
        requested, ready = self._workers(cluster)
        current = requested if requested is not None else cluster.desired_workers
        now = self.clock()

        try:
            signals = self.source_for(body).read(now, ready)
        except SignalsUnavailable as exc:
            message = f"cannot read signals: {exc}"
            log.warning("%s/%s: %s", namespace, name, message)
            self._record_unavailable(namespace, name, meta.get("generation"), message)
            self.metrics.observe_unavailable(namespace, name)
            return TickResult(None, message)

        state = PolicyState.from_dict(saved.get("state"))
        decision, state = decide(spec, state, signals, current)
        self._record(namespace, name, meta.get("generation"), decision, state)
        self.metrics.observe_tick(namespace, name, decision.desired, decision.direction)
        if decision.changed:
            verb = "ScaledUp" if decision.direction > 0 else "ScaledDown"
            emit_event(
                self.core, body, "Normal", verb,
                f"workers {decision.current} -> {decision.desired}: {decision.reason}",
            )
            log.info("%s/%s: %d -> %d (%s)", namespace, name, decision.current,
                     decision.desired, decision.reason)
            self.apply(namespace, name)
        return TickResult(decision)

    def _record(self, namespace: str, name: str, generation: int | None, decision: Decision,
                state: PolicyState) -> None:
        signals = decision.signals

        def mutate(status: dict[str, Any]) -> None:
            auto = dict(status.get("autoscaler") or {})
            history = list(auto.get("history") or [])
            if decision.changed:
                history = (history + [history_entry(decision)])[-HISTORY_LENGTH:]
            auto.update(
                desiredReplicas=decision.desired,
                lastReason=decision.reason,
                lastTick=_iso(signals.time),
                history=history,
                state=state.to_dict(),
            )
            status["autoscaler"] = auto
            metrics = dict(status.get("metrics") or {})
            metrics["queueDepth"] = signals.queue_depth
            if signals.ttfa_p95_ms is not None:
                metrics["ttfbP95Ms"] = round(signals.ttfa_p95_ms, 1)
            if decision.changed:
                metrics["lastScaleTime"] = _iso(signals.time)
                metrics["lastScaleReason"] = decision.reason
            status["metrics"] = metrics
            status["conditions"] = merge_conditions(
                status.get("conditions") or [],
                [condition("ScalingActive", "True", "SignalsRead", decision.reason)],
                generation,
            )

        patch_status(self.custom, namespace, name, mutate)

    def _record_unavailable(self, namespace: str, name: str, generation: int | None,
                            message: str) -> None:
        def mutate(status: dict[str, Any]) -> None:
            status["conditions"] = merge_conditions(
                status.get("conditions") or [],
                [condition("ScalingActive", "False", "SignalsUnavailable", message[:900])],
                generation,
            )

        try:
            patch_status(self.custom, namespace, name, mutate)
        except ApiException as exc:
            log.warning("%s/%s: could not record the failure: %s", namespace, name, exc.reason)
