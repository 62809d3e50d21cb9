"""One autoscaler tick for one `OrpheusCluster`: observe, decide, scale, record.

- observe: the gateway's `/v1/system` as deployed (its Service, the cluster's system key), or
  a Prometheus source; every cluster is observed, so `kubectl get otts` shows queue and TTFA
  with autoscaling off too (observe-only);
- decide (autoscaling on): `policy.decide` with the state carried in `status.autoscaler.state`
  and the current count `spec.workers.replicas`;
- scale: a merge patch of the cluster's `/scale` subresource (with the resourceVersion the tick
  read, so a concurrent `kubectl scale` or edit wins and this tick's decision is dropped); the
  operator's spec handler then sets the worker Deployment, like for any other scaler;
- record: `status.metrics` and the `ScalingActive` condition every tick; on a change, a
  Kubernetes Event and an entry in `status.autoscaler.history` (the last `HISTORY_LENGTH`).

With model pools (`spec.pools`) every pool is decided on its own signals (the gateway's
per-pool block of `/v1/system`), with its own bounds, targets and policy state
(`status.autoscaler.pools[NAME]`); the counts that changed are written to
`spec.pools[i].workers.replicas` in one JSON patch guarded by the tick's resourceVersion, and
each pool's queue, TTFA and last decision go to its `status.pools[]` block.

Everything the policy needs lives in status, so an operator restart loses nothing.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any, Callable

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .. import crd, kube
from ..cluster import SYSTEM_KEY_FIELD, Cluster, gateway_url, system_key_secret_name
from ..metrics import OPERATOR_METRICS, OperatorMetrics
from ..status import condition, emit_event, merge_conditions, patch_status
from .policy import AutoscalingSpec, Decision, PolicyState, Signals, decide
from .signals import (
    GatewaySource,
    PrometheusSource,
    SignalSource,
    SignalsUnauthorized,
    SignalsUnavailable,
)

log = logging.getLogger(__name__)

METRICS_URL_ANNOTATION = "tts.orpheus.dev/metrics-url"
PROMETHEUS_URL_ANNOTATION = "tts.orpheus.dev/prometheus-url"
HISTORY_LENGTH = 10


@dataclass
class TickResult:
    decision: Decision | None
    error: str | None = None
    signals: Signals | None = None
    pools: dict[str, Decision | None] | None = None  # with spec.pools: each pool's decision
    pool_signals: dict[str, Signals] | None = None


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def history_entry(decision: Decision) -> dict[str, Any]:
    return {
        "time": _iso(decision.signals.time),
        "from": decision.current,
        "to": decision.desired,
        "reason": decision.reason,
        "signals": decision.signals.to_dict(),
    }


def recorded(entry: dict[str, Any] | None, scale_fields: dict[str, Any], decision: Decision,
             state: PolicyState) -> dict[str, Any]:
    """An autoscaler status block (`status.autoscaler`, or a pool's entry in it) after
    `decision`; a change also sets `lastScaleTime`/`lastScaleReason` in `scale_fields` (the
    cluster's `status.metrics`, or the pool's `status.pools[]` block)."""
    entry = dict(entry or {})
    history = list(entry.get("history") or [])
    when = _iso(decision.signals.time)
    if decision.changed:
        history = (history + [history_entry(decision)])[-HISTORY_LENGTH:]
        scale_fields["lastScaleTime"] = when
        scale_fields["lastScaleReason"] = decision.reason
    entry.update(lastReason=decision.reason, lastTick=when, history=history,
                 state=state.to_dict())
    return entry


class SystemKeys:
    """The system key of each cluster, read from its Secret once and kept until refused."""

    def __init__(self, core: client.CoreV1Api):
        self.core = core
        self._keys: dict[tuple[str, str], str] = {}

    def get(self, cluster: Cluster) -> str:
        ref = (cluster.namespace, cluster.uid)
        if ref not in self._keys:
            name = system_key_secret_name(cluster.name)
            try:
                secret = self.core.read_namespaced_secret(name, cluster.namespace)
            except ApiException as exc:
                if exc.status == 404:
                    raise SignalsUnavailable(f"Secret {cluster.namespace}/{name} (the system "
                                             f"key) does not exist yet") from exc
                raise
            encoded = (secret.data or {}).get(SYSTEM_KEY_FIELD)
            if not encoded:
                raise SignalsUnavailable(f"Secret {cluster.namespace}/{name} has no "
                                         f"{SYSTEM_KEY_FIELD!r}")
            self._keys[ref] = base64.b64decode(encoded).decode().strip()
        return self._keys[ref]

    def forget(self, cluster: Cluster) -> None:
        self._keys.pop((cluster.namespace, cluster.uid), None)


class AutoscalerController:
    """Runs ticks against the API server; `clock` and `source_for` are injectable."""

    def __init__(
        self,
        api: client.ApiClient,
        clock: Callable[[], float],
        source_for: Callable[[dict[str, Any]], SignalSource] | None = None,
        metrics: OperatorMetrics = OPERATOR_METRICS,
    ):
        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.clock = clock
        self.keys = SystemKeys(self.core)
        self._source_for = source_for
        self.metrics = metrics

    def source_for(self, body: dict[str, Any]) -> SignalSource:
        """The gateway Service with the system key; annotations point elsewhere (Prometheus,
        or the gateway's URL when the operator runs outside the cluster, as in tests)."""
        if self._source_for is not None:
            return self._source_for(body)
        annotations = body["metadata"].get("annotations") or {}
        if annotations.get(PROMETHEUS_URL_ANNOTATION):
            return PrometheusSource(annotations[PROMETHEUS_URL_ANNOTATION])
        cluster = Cluster.from_body(body)
        url = annotations.get(METRICS_URL_ANNOTATION) or gateway_url(cluster)
        return GatewaySource(url, api_key=self.keys.get(cluster) if cluster.auth else None)

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
        if not cluster.single_pool:
            return self.tick_pools(body, cluster)
        status = body.get("status") or {}
        ready_fallback = int((status.get("workers") or {}).get("readyReplicas") or 0)
        now = self.clock()
        try:
            signals = self.source_for(body).read(now, ready_fallback)
        except SignalsUnavailable as exc:
            if isinstance(exc, SignalsUnauthorized):
                self.keys.forget(cluster)
            message = f"cannot read signals: {exc}"
            log.warning("%s/%s: %s", namespace, name, message)
            self._record_unavailable(cluster, meta.get("generation"), message)
            self.metrics.observe_unavailable(namespace, name)
            return TickResult(None, message)

        if not cluster.autoscaling:
            self._record(cluster, meta.get("generation"), signals)
            return TickResult(None, signals=signals)

        spec = AutoscalingSpec.from_resource(cluster.spec)
        state = PolicyState.from_dict((status.get("autoscaler") or {}).get("state"))
        decision, state = decide(spec, state, signals, cluster.worker_replicas)
        if decision.changed and not self.scale(cluster, meta["resourceVersion"],
                                               decision.desired):
            return TickResult(None, "the cluster changed during the tick; decided again next")
        self._record(cluster, meta.get("generation"), signals, decision, state)
        self.metrics.observe_tick(namespace, name, decision.desired, decision.direction)
        if decision.changed:
            verb = "ScaledUp" if decision.direction > 0 else "ScaledDown"
            emit_event(self.core, body, "Normal", verb,
                       f"workers {decision.current} -> {decision.desired}: {decision.reason}")
            log.info("%s/%s: %d -> %d (%s)", namespace, name, decision.current,
                     decision.desired, decision.reason)
        return TickResult(decision, signals=signals)

    # --- model pools ---------------------------------------------------------------------------
    def tick_pools(self, body: dict[str, Any], cluster: Cluster) -> TickResult:
        """Observe every pool, decide for those that autoscale, scale them in one write."""
        meta = body["metadata"]
        status = body.get("status") or {}
        ready = {b.get("name"): int(b.get("readyReplicas") or 0)
                 for b in status.get("pools") or []}
        now = self.clock()
        try:
            signals = self.source_for(body).read_pools(
                now, {pool.name: ready.get(pool.name, 0) for pool in cluster.pools})
        except SignalsUnavailable as exc:
            if isinstance(exc, SignalsUnauthorized):
                self.keys.forget(cluster)
            message = f"cannot read signals: {exc}"
            log.warning("%s/%s: %s", cluster.namespace, cluster.name, message)
            self._record_unavailable(cluster, meta.get("generation"), message)
            self.metrics.observe_unavailable(cluster.namespace, cluster.name)
            return TickResult(None, message)

        states = ((status.get("autoscaler") or {}).get("pools") or {})
        decisions: dict[str, Decision | None] = {}
        new_states: dict[str, PolicyState] = {}
        for pool in cluster.pools:
            if not pool.autoscaling:
                decisions[pool.name] = None
                continue
            spec = AutoscalingSpec.from_resource(pool.spec)
            state = PolicyState.from_dict((states.get(pool.name) or {}).get("state"))
            decisions[pool.name], new_states[pool.name] = decide(
                spec, state, signals[pool.name], pool.replicas)
        changed = {name: d for name, d in decisions.items() if d is not None and d.changed}
        if changed and not self.scale_pools(body, cluster, changed):
            return TickResult(None, "the cluster changed during the tick; decided again next")
        self._record_pools(cluster, meta.get("generation"), signals, decisions, new_states)
        desired_total = sum(d.desired if d is not None else pool.replicas
                            for pool, d in ((p, decisions[p.name]) for p in cluster.pools))
        for pool in cluster.pools:
            decision = decisions[pool.name]
            if decision is None:
                continue
            # the cluster's series: the workers it asks for in all, a decision per pool
            self.metrics.observe_tick(cluster.namespace, cluster.name, desired_total,
                                      decision.direction)
            if decision.changed:
                verb = "ScaledUp" if decision.direction > 0 else "ScaledDown"
                emit_event(self.core, body, "Normal", verb,
                           f"pool {pool.name}: workers {decision.current} -> "
                           f"{decision.desired}: {decision.reason}")
                log.info("%s/%s pool %s: %d -> %d (%s)", cluster.namespace, cluster.name,
                         pool.name, decision.current, decision.desired, decision.reason)
        return TickResult(None, pools=decisions, pool_signals=signals)

    def scale_pools(self, body: dict[str, Any], cluster: Cluster,
                    decisions: dict[str, Decision]) -> bool:
        """Write each changed pool's `spec.pools[i].workers.replicas` in one JSON patch that
        first tests the resourceVersion the tick read (and each pool's name at its index), so
        a concurrent edit wins and this tick's decisions are dropped. False on that conflict."""
        raw_pools = body["spec"]["pools"]
        ops: list[dict[str, Any]] = [{"op": "test", "path": "/metadata/resourceVersion",
                                      "value": body["metadata"]["resourceVersion"]}]
        for pool in cluster.pools:
            if pool.name not in decisions:
                continue
            raw = raw_pools[pool.index]
            ops += [{"op": "test", "path": f"/spec/pools/{pool.index}/name", "value": pool.name},
                    {"op": "add", "path": f"/spec/pools/{pool.index}/workers",
                     "value": {**(raw.get("workers") or {}),
                               "replicas": decisions[pool.name].desired}}]
        path = (f"/apis/{crd.API_VERSION}/namespaces/{cluster.namespace}/{crd.PLURAL}/"
                f"{cluster.name}")
        try:
            kube.request(self.api, "PATCH", path, body=ops,
                         content_type="application/json-patch+json")
        except ApiException as exc:
            if exc.status in (409, 422):  # a failed test op is 422
                return False
            raise
        return True

    def _record_pools(self, cluster: Cluster, generation: int | None,
                      signals: dict[str, Signals], decisions: dict[str, Decision | None],
                      states: dict[str, PolicyState]) -> None:
        def mutate(status: dict[str, Any], _cluster: dict[str, Any]) -> None:
            blocks = {b.get("name"): dict(b) for b in status.get("pools") or []}
            auto = dict(status.get("autoscaler") or {})
            auto_pools = dict(auto.get("pools") or {})
            reasons = []
            for pool in cluster.pools:
                observed, decision = signals[pool.name], decisions[pool.name]
                block = blocks.setdefault(pool.name, {"name": pool.name})
                block["queueDepth"] = observed.queue_depth
                if observed.ttfa_p95_ms is not None:
                    block["ttfaP95Ms"] = round(observed.ttfa_p95_ms, 1)
                else:
                    block.pop("ttfaP95Ms", None)
                if decision is None:
                    continue
                auto_pools[pool.name] = recorded(auto_pools.get(pool.name), block, decision,
                                                 states[pool.name])
                reasons.append(f"{pool.name}: {decision.reason}")
            status["pools"] = [blocks.pop(pool.name) for pool in cluster.pools] + list(
                blocks.values())
            metrics = dict(status.get("metrics") or {})
            metrics["queueDepth"] = sum(s.queue_depth for s in signals.values())
            p95s = [s.ttfa_p95_ms for s in signals.values() if s.ttfa_p95_ms is not None]
            if p95s:  # the slowest pool's
                metrics["ttfaP95Ms"] = round(max(p95s), 1)
            else:
                metrics.pop("ttfaP95Ms", None)
            status["metrics"] = metrics
            if reasons:
                auto["pools"] = auto_pools
                status["autoscaler"] = auto
                status["conditions"] = merge_conditions(
                    status.get("conditions") or [],
                    [condition("ScalingActive", "True", "SignalsRead", "; ".join(reasons)[:900])],
                    generation,
                )

        patch_status(self.custom, cluster.namespace, cluster.name, mutate)

    def scale(self, cluster: Cluster, resource_version: str, replicas: int) -> bool:
        """Write `replicas` through the scale subresource; False on a conflict."""
        path = (f"/apis/{crd.API_VERSION}/namespaces/{cluster.namespace}/{crd.PLURAL}/"
                f"{cluster.name}/scale")
        try:
            kube.request(self.api, "PATCH", path,
                         body={"metadata": {"resourceVersion": resource_version},
                               "spec": {"replicas": replicas}},
                         content_type="application/merge-patch+json")
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def _record(self, cluster: Cluster, generation: int | None, signals: Signals,
                decision: Decision | None = None, state: PolicyState | None = None) -> None:
        def mutate(status: dict[str, Any], _cluster: dict[str, Any]) -> None:
            metrics = dict(status.get("metrics") or {})
            metrics["queueDepth"] = signals.queue_depth
            if signals.ttfa_p95_ms is not None:
                metrics["ttfaP95Ms"] = round(signals.ttfa_p95_ms, 1)
            else:
                metrics.pop("ttfaP95Ms", None)
            if decision is None or state is None:
                status["metrics"] = metrics
                return
            status["autoscaler"] = recorded(status.get("autoscaler"), metrics, decision, state)
            status["metrics"] = metrics
            status["conditions"] = merge_conditions(
                status.get("conditions") or [],
                [condition("ScalingActive", "True", "SignalsRead", decision.reason)],
                generation,
            )

        patch_status(self.custom, cluster.namespace, cluster.name, mutate)

    def _record_unavailable(self, cluster: Cluster, generation: int | None,
                            message: str) -> None:
        def mutate(status: dict[str, Any], _cluster: dict[str, Any]) -> None:
            if status.get("metrics"):
                metrics = dict(status["metrics"])
                for stale in ("queueDepth", "ttfaP95Ms"):  # empty columns rather than old ones
                    metrics.pop(stale, None)
                status["metrics"] = metrics
            if status.get("pools"):
                status["pools"] = [{k: v for k, v in block.items()
                                    if k not in ("queueDepth", "ttfaP95Ms")}
                                   for block in status["pools"]]
            if cluster.autoscaling:
                status["conditions"] = merge_conditions(
                    status.get("conditions") or [],
                    [condition("ScalingActive", "False", "SignalsUnavailable", message[:900])],
                    generation,
                )

        try:
            patch_status(self.custom, cluster.namespace, cluster.name, mutate)
        except ApiException as exc:
            log.warning("%s/%s: could not record the failure: %s", cluster.namespace,
                        cluster.name, exc.reason)
