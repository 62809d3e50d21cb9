"""`OrpheusCluster` status: conditions, the status patch, and Events.

`compute_status` is pure; `patch_status` and `emit_event` are the only writers, shared with the
autoscaler (`orpheus_operator.autoscaler`), so every status write goes through one
read-modify-write path that skips writes when nothing changed.

Ownership of status fields: the operator writes `observedGeneration`, `workers`, `gateway` and
the `Ready`, `Progressing`, `Degraded`, `Deprecated` conditions; `ScalingActive` too while
autoscaling is off. The autoscaler's daemon writes `metrics` (always: observe-only with
autoscaling off) and, with autoscaling on, `ScalingActive` and `autoscaler`.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from . import crd
from .cluster import Cluster, gateway_url, limits_per_replica, worker_selector

log = logging.getLogger(__name__)

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"
COMPONENT = "orpheus-operator"


@dataclass(frozen=True)
class Problem:
    """Something that keeps the spec from being satisfied (becomes `Degraded`)."""

    reason: str
    message: str


@dataclass(frozen=True)
class DeploymentState:
    replicas: int = 0  # asked for
    ready: int = 0
    updated: int = 0
    available: int = 0
    exists: bool = False

    @classmethod
    def from_status(cls, spec_replicas: int, status: dict[str, Any] | None) -> DeploymentState:
        status = status or {}
        return cls(replicas=spec_replicas, ready=status.get("readyReplicas") or 0,
                   updated=status.get("updatedReplicas") or 0,
                   available=status.get("availableReplicas") or 0, exists=True)


    @classmethod
    def total(cls, states: list[DeploymentState]) -> DeploymentState:
        """Several pools' worker Deployments as one (exists: all of them do)."""
        return cls(replicas=sum(s.replicas for s in states), ready=sum(s.ready for s in states),
                   updated=sum(s.updated for s in states),
                   available=sum(s.available for s in states),
                   exists=bool(states) and all(s.exists for s in states))


@dataclass(frozen=True)
class Observed:
    workers: DeploymentState = DeploymentState()  # every pool's workers together
    gateway: DeploymentState = DeploymentState()
    endpoint: str | None = None  # overrides the in-cluster URL (a LoadBalancer's address)
    problems: list[Problem] = field(default_factory=list)
    pools: dict[str, DeploymentState] = field(default_factory=dict)  # by pool name

    def pool_states(self, cluster: Cluster) -> dict[str, DeploymentState]:
        """Each pool's workers (a single pool's are `workers` when not given by name)."""
        if not self.pools and cluster.single_pool:
            return {cluster.pools[0].name: self.workers}
        return {pool.name: self.pools.get(pool.name, DeploymentState())
                for pool in cluster.pools}


def condition(type_: str, status: str, reason: str, message: str) -> dict[str, str]:
    return {"type": type_, "status": status, "reason": reason, "message": message}


def compute_conditions(cluster: Cluster, observed: Observed) -> list[dict[str, str]]:
    """The operator's conditions for what it observed (without times)."""
    workers, gateway = observed.workers, observed.gateway
    conditions = []
    if observed.problems:
        first = observed.problems[0]
        message = "; ".join(p.message for p in observed.problems)
        conditions.append(condition("Degraded", TRUE, first.reason, message))
    else:
        conditions.append(condition("Degraded", FALSE, "ReconcileSucceeded",
                                    "All children are applied."))

    rolling = workers.updated < workers.replicas or gateway.updated < gateway.replicas
    if not workers.exists or not gateway.exists:
        conditions.append(condition("Progressing", TRUE, "Creating", "Creating children."))
    elif rolling:
        conditions.append(condition(
            "Progressing", TRUE, "RollingOut",
            f"workers updated {workers.updated}/{workers.replicas}, "
            f"gateway updated {gateway.updated}/{gateway.replicas}"))
    elif workers.ready != workers.replicas or gateway.ready != gateway.replicas:
        conditions.append(condition(
            "Progressing", TRUE, "WaitingForPods",
            f"workers ready {workers.ready}/{workers.replicas}, "
            f"gateway ready {gateway.ready}/{gateway.replicas}"))
    else:
        conditions.append(condition("Progressing", FALSE, "Complete",
                                    "Every pod is updated and ready."))

    if observed.problems:
        conditions.append(condition("Ready", FALSE, observed.problems[0].reason,
                                    "Degraded: " + observed.problems[0].message))
    elif gateway.ready < 1:
        conditions.append(condition("Ready", FALSE, "GatewayNotReady", "No gateway pod is ready."))
    elif not cluster.single_pool and any(
            state.ready < 1 for state in observed.pool_states(cluster).values()):
        idle = [name for name, state in observed.pool_states(cluster).items() if state.ready < 1]
        reason = "ScaledToZero" if all(observed.pool_states(cluster)[name].replicas == 0
                                       for name in idle) else "NoWorkerReady"
        conditions.append(condition("Ready", FALSE, reason,
                                    f"No worker pod is ready in pool(s) {', '.join(idle)}."))
    elif workers.ready < 1:
        reason = "ScaledToZero" if workers.replicas == 0 else "NoWorkerReady"
        conditions.append(condition("Ready", FALSE, reason, "No worker pod is ready."))
    else:
        conditions.append(condition(
            "Ready", TRUE, "Serving",
            f"{gateway.ready} gateway and {workers.ready}/{workers.replicas} workers ready."))

    if not cluster.autoscaling:
        conditions.append(condition(
            "ScalingActive", FALSE, "AutoscalingDisabled",
            "spec.workers.replicas (the scale subresource) sets the worker count."
            if cluster.single_pool else
            "spec.pools[].workers.replicas set each pool's worker count."))

    deprecated = cluster.deprecated_fields
    if deprecated:
        conditions.append(condition("Deprecated", TRUE, "DeprecatedField",
                                    "deprecated spelling in use: " + "; ".join(deprecated)))
    else:
        conditions.append(condition("Deprecated", FALSE, "NoDeprecatedField",
                                    "The spec uses current field names only."))
    return conditions


# The fields of a `status.pools[]` entry the autoscaler writes (the operator keeps them).
AUTOSCALER_POOL_FIELDS = ("queueDepth", "ttfaP95Ms", "lastScaleTime", "lastScaleReason")


def pool_blocks(cluster: Cluster, observed: Observed,
                current: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """`status.pools`: each pool's workers, keeping what the autoscaler wrote there."""
    kept = {item.get("name"): item for item in current or []}
    blocks = []
    for pool in cluster.pools:
        state = observed.pool_states(cluster)[pool.name]
        block: dict[str, Any] = {
            "name": pool.name, "deployment": pool.worker_name,
            "replicas": state.replicas, "readyReplicas": state.ready, "ready": state.ready >= 1,
            "summary": f"{state.ready}/{state.replicas}"}
        if pool.model_name:
            block["model"] = pool.model_name
        block.update({k: v for k, v in (kept.get(pool.name) or {}).items()
                      if k in AUTOSCALER_POOL_FIELDS})
        blocks.append(block)
    return blocks


def compute_status(cluster: Cluster, observed: Observed, generation: int,
                   current_pools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The status fields the operator owns (conditions are merged separately)."""
    workers, gateway = observed.workers, observed.gateway
    pools = pool_blocks(cluster, observed, current_pools)
    return {
        "observedGeneration": generation,
        "pools": pools,
        "poolsReady": f"{sum(1 for b in pools if b['ready'])}/{len(pools)}",
        "workers": {"replicas": workers.replicas, "readyReplicas": workers.ready,
                    "summary": f"{workers.ready}/{workers.replicas}",
                    "selector": worker_selector(cluster.name)},
        "gateway": {"ready": gateway.ready >= 1, "readyReplicas": gateway.ready,
                    "endpoint": observed.endpoint or gateway_url(cluster),
                    "limitsPerReplica": limits_per_replica(cluster)},
    }


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_conditions(current: list[dict[str, Any]], updates: list[dict[str, Any]],
                     generation: int | None = None, now: str | None = None
                     ) -> list[dict[str, Any]]:
    """Conditions with `updates` applied; `lastTransitionTime` moves only when status changes."""
    now = now or _now()
    merged = {c["type"]: dict(c) for c in current}
    for update in updates:
        old = merged.get(update["type"])
        new = dict(update)
        if generation is not None:
            new["observedGeneration"] = generation
        if old is not None and old.get("status") == new["status"]:
            new["lastTransitionTime"] = old.get("lastTransitionTime") or now
        else:
            new["lastTransitionTime"] = now
        merged[update["type"]] = new
    order = {t: i for i, t in enumerate(crd.CONDITION_TYPES)}
    return sorted(merged.values(), key=lambda c: (order.get(c["type"], 99), c["type"]))


def get_condition(status: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    for cond in (status or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return cond
    return None


# --- writers -----------------------------------------------------------------------------------
def patch_status(api: client.CustomObjectsApi, namespace: str, name: str,
                 mutate: Callable[[dict[str, Any], dict[str, Any]], None],
                 attempts: int = 4) -> bool:
    """Read the cluster, let `mutate(status, cluster)` edit a copy of its status, write it only
    if it changed (`cluster` is the object as read, for mutations that depend on its spec).

    The write carries the read's resourceVersion, so concurrent writers (operator handlers, the
    autoscaler) never overwrite each other's fields: a conflict re-reads and re-applies.
    Returns whether a write happened.
    """
    for attempt in range(attempts):
        body = api.get_namespaced_custom_object(crd.GROUP, crd.VERSION, namespace, crd.PLURAL,
                                                name)
        status = copy.deepcopy(body.get("status") or {})
        mutate(status, body)
        if status == (body.get("status") or {}):
            return False
        patch = {"metadata": {"resourceVersion": body["metadata"]["resourceVersion"]},
                 "status": status}
        try:
            api.patch_namespaced_custom_object_status(crd.GROUP, crd.VERSION, namespace,
                                                      crd.PLURAL, name, _replace_patch(body,
                                                                                       patch))
            return True
        except ApiException as exc:
            if exc.status != 409 or attempt == attempts - 1:
                raise
    return False


def _replace_patch(body: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """A merge patch whose status deletes keys the mutation removed (null values)."""
    old = body.get("status") or {}
    status = dict(patch["status"])
    for key in old:
        if key not in status:
            status[key] = None
    return {**patch, "status": status}


def api_message(exc: ApiException) -> str:
    """The API server's own explanation of a failed request (its Status message)."""
    try:
        return json.loads(exc.body or "{}").get("message") or str(exc.reason)
    except (ValueError, AttributeError):
        return str(exc.reason)


def emit_event(core: client.CoreV1Api, body: dict[str, Any], type_: str, reason: str,
               message: str) -> None:
    """Record a core/v1 Event about the cluster (`kubectl describe otts NAME` shows it).

    Never raises: losing an Event must not fail a reconcile or a scale decision.
    """
    meta = body["metadata"]
    now = dt.datetime.now(dt.timezone.utc)
    event = client.CoreV1Event(
        metadata=client.V1ObjectMeta(name=f"{meta['name']}.{uuid.uuid4().hex[:12]}",
                                     namespace=meta["namespace"]),
        involved_object=client.V1ObjectReference(
            api_version=crd.API_VERSION, kind=crd.KIND, name=meta["name"],
            namespace=meta["namespace"], uid=meta.get("uid"),
            resource_version=meta.get("resourceVersion")),
        type=type_, reason=reason, message=message[:1024],
        source=client.V1EventSource(component=COMPONENT),
        first_timestamp=now, last_timestamp=now, count=1,
        reporting_component=COMPONENT, reporting_instance=COMPONENT,
    )
    try:
        core.create_namespaced_event(meta["namespace"], event)
    except ApiException as exc:
        log.warning("could not record event %s (%s): %s", reason, message, api_message(exc))
