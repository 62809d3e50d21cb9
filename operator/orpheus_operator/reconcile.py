"""Reconciling an `OrpheusCluster`: a full pass, and the cheap refresh a child event needs.

`reconcile(body)` is what kopf's create, update (spec, including the scale subresource),
resume and resync handlers call: it applies every child (server-side apply, a no-op on the
server when nothing changed), creates the system-key Secret once, and writes a fresh status
only when it differs.

`refresh(namespace, name, deployment)` is what a child Deployment's event calls (pods became
ready, someone scaled or edited it). The reconciler remembers each Deployment it applied and
the `metadata.generation` the server gave it: an event at that generation only changed status,
so the refresh recomputes the cluster's status from the Deployments it has seen (one read and,
when something changed, one write of the cluster's status); an event at another generation is
drift, and triggers a full pass that puts the spec back.

API calls per pass are counted (`ReconcileResult.api_calls`, logged at debug); see
docs/operator.md for the numbers before and after this split.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from . import crd, kube
from .cluster import Cluster, gateway_name, worker_selector
from .manifests import Options, children, internal_token_secret, system_key_secret
from .metrics import OPERATOR_METRICS
from .status import (
    DeploymentState,
    Observed,
    Problem,
    api_message,
    compute_conditions,
    compute_status,
    emit_event,
    get_condition,
    merge_conditions,
    patch_status,
)

log = logging.getLogger(__name__)

DISCOVERY_TTL_S = 300.0  # how long "is the ServiceMonitor CRD served" is trusted


class TransientError(Exception):
    """The API server could not be reached or answered 5xx: retry later."""


@dataclass
class ReconcileResult:
    applied: list[str] = field(default_factory=list)  # "Kind/name" of every child applied
    problems: list[Problem] = field(default_factory=list)
    status_written: bool = False
    api_calls: int = 0
    full: bool = True  # False: a status-only refresh


@dataclass
class _Seen:
    """What the reconciler knows of one cluster between passes."""

    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> live object
    generations: dict[str, int] = field(default_factory=dict)  # name -> generation we applied
    problems: list[Problem] = field(default_factory=list)  # of the last full pass
    endpoint: str | None = None
    created_once: set[str] = field(default_factory=set)  # made-once Secrets known to exist


def _transient(exc: ApiException) -> bool:
    return exc.status is None or exc.status >= 500 or exc.status == 429


class Reconciler:
    def __init__(self, api: client.ApiClient):
        self.api = api
        self.calls = kube.CallCounter(api)
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self._seen: dict[str, _Seen] = {}  # by the cluster's uid
        self._options: tuple[float, Options] | None = None
        self._lock = threading.Lock()

    # --- checks the API server cannot make ---------------------------------------------------
    def check_auth_secret(self, cluster: Cluster) -> Problem | None:
        auth = cluster.spec["gateway"]["auth"]
        if not auth["enabled"]:
            return None
        ref = auth["secretRef"]
        try:
            secret = self.core.read_namespaced_secret(ref["name"], cluster.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return Problem("AuthSecretMissing",
                               f"Secret {cluster.namespace}/{ref['name']} named by "
                               f"gateway.auth.secretRef does not exist; create it with the API "
                               f"keys under key {ref['key']!r}")
            raise
        if ref["key"] not in (secret.data or {}) and ref["key"] not in (secret.string_data or {}):
            return Problem("AuthSecretKeyMissing",
                           f"Secret {cluster.namespace}/{ref['name']} has no key {ref['key']!r} "
                           f"(gateway.auth.secretRef.key)")
        return None

    def ensure_made_once_secrets(self, cluster: Cluster, seen: _Seen) -> None:
        """Create the random Secrets a cluster needs (the internal token, and the system key
        when auth is on) once; never read or rewrite an existing one (409 means it exists)."""
        wanted = [internal_token_secret(cluster, secrets.token_urlsafe(32))]
        if cluster.auth:
            wanted.append(system_key_secret(cluster, secrets.token_urlsafe(32)))
        for manifest in wanted:
            name = manifest["metadata"]["name"]
            if name in seen.created_once:
                continue
            try:
                self.core.create_namespaced_secret(cluster.namespace, manifest)
            except ApiException as exc:
                if exc.status != 409:
                    raise
            seen.created_once.add(name)

    def options(self) -> Options:
        now = time.monotonic()
        if self._options is None or now - self._options[0] > DISCOVERY_TTL_S:
            served = kube.api_group_served(self.api, "monitoring.coreos.com/v1", "ServiceMonitor")
            self._options = (now, Options(service_monitor=served))
        return self._options[1]

    # --- the passes --------------------------------------------------------------------------
    def reconcile(self, body: dict[str, Any]) -> ReconcileResult:
        return self._guarded(lambda: self._reconcile(body))

    def refresh(self, namespace: str, name: str, deployment: dict[str, Any]) -> ReconcileResult:
        """A child Deployment changed: status only, unless its spec drifted (then a full pass)."""
        return self._guarded(lambda: self._refresh(namespace, name, deployment))

    def _guarded(self, run: Any) -> ReconcileResult:
        with self._lock:  # one pass at a time: the counter and the memory are shared
            before = self.calls.count
            try:
                result = run()
            except ApiException as exc:
                if _transient(exc):
                    raise TransientError(f"API server: {exc.status} {exc.reason}") from exc
                raise
            except OSError as exc:  # connection refused/reset, timeouts
                raise TransientError(f"API server unreachable: {exc}") from exc
            result.api_calls = self.calls.count - before
            return result

    def _reconcile(self, body: dict[str, Any]) -> ReconcileResult:
        result = ReconcileResult()
        if body["metadata"].get("deletionTimestamp"):
            OPERATOR_METRICS.forget(body["metadata"]["namespace"], body["metadata"]["name"])
            return result  # being deleted: the garbage collector takes the children
        cluster = Cluster.from_body(body)
        seen = self._seen.setdefault(cluster.uid, _Seen())
        secret_problem = self.check_auth_secret(cluster)
        if secret_problem:
            result.problems.append(secret_problem)
        self.ensure_made_once_secrets(cluster, seen)

        for manifest in children(cluster, self.options()):
            ref = f"{manifest['kind']}/{manifest['metadata']['name']}"
            try:
                live = kube.apply(self.api, manifest)
                result.applied.append(ref)
            except ApiException as exc:
                if _transient(exc):
                    raise
                result.problems.append(Problem("ApplyFailed", f"{ref}: {api_message(exc)}"))
                continue
            if manifest["kind"] == "Deployment":
                name = manifest["metadata"]["name"]
                seen.deployments[name] = live
                seen.generations[name] = live["metadata"].get("generation", 0)
            elif ref == f"Service/{gateway_name(cluster.name)}":
                seen.endpoint = _load_balancer_endpoint(cluster, live)
        self.retire_unrendered_workers(body, cluster, seen)
        seen.problems = list(result.problems)
        result.status_written = self._write_status(body, cluster, seen)
        return result

    def retire_unrendered_workers(self, body: dict[str, Any], cluster: Cluster,
                                  seen: _Seen) -> list[str]:
        """Scale to zero this cluster's worker Deployments that no pool renders any more (a
        pool removed from spec.pools, or the single-model fleet after a move to pools), so
        they hold no GPU; returns their names. Never deleted: the operator holds no delete
        permission (`kubectl delete deployment NAME` removes one; re-adding its pool brings it
        back at the pool's count)."""
        wanted = {pool.worker_name for pool in cluster.pools}
        listed = client.AppsV1Api(self.api).list_namespaced_deployment(
            cluster.namespace, label_selector=worker_selector(cluster.name))
        retired = []
        for deployment in listed.items:
            name = deployment.metadata.name
            owners = {ref.uid for ref in deployment.metadata.owner_references or []
                      if ref.kind == crd.KIND and ref.controller}
            if name in wanted or cluster.uid not in owners:
                continue
            retired.append(name)
            seen.deployments.pop(name, None)
            if deployment.spec.replicas:
                client.AppsV1Api(self.api).patch_namespaced_deployment(
                    name, cluster.namespace, {"spec": {"replicas": 0}})
                emit_event(self.core, body, "Normal", "RetiredWorkers",
                           f"Deployment {name} serves no pool of the spec any more: scaled "
                           f"from {deployment.spec.replicas} to 0 (delete it with kubectl)")
        return retired

    def _refresh(self, namespace: str, name: str, deployment: dict[str, Any]) -> ReconcileResult:
        seen = self._seen.get(_owner_uid(deployment))
        dep_name = deployment["metadata"]["name"]
        if seen is None or seen.generations.get(dep_name) != \
                deployment["metadata"].get("generation"):
            body = self._get_cluster(namespace, name)  # unknown, or drifted: a full pass
            return self._reconcile(body) if body is not None else ReconcileResult(full=False)
        seen.deployments[dep_name] = deployment
        result = ReconcileResult(full=False, problems=list(seen.problems))
        result.status_written = self._write_status(None, None, seen, namespace, name)
        return result

    def _get_cluster(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, namespace,
                                                            crd.PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    # --- status ------------------------------------------------------------------------------
    @staticmethod
    def _observe(cluster: Cluster, seen: _Seen) -> Observed:
        def deployment(dep_name: str) -> DeploymentState:
            obj = seen.deployments.get(dep_name)
            if obj is None:
                return DeploymentState()
            return DeploymentState.from_status(obj["spec"].get("replicas", 0), obj.get("status"))

        pools = {pool.name: deployment(pool.worker_name) for pool in cluster.pools}
        return Observed(workers=DeploymentState.total(list(pools.values())),
                        gateway=deployment(gateway_name(cluster.name)),
                        endpoint=seen.endpoint, problems=list(seen.problems), pools=pools)

    def _write_status(self, body: dict[str, Any] | None, cluster: Cluster | None, seen: _Seen,
                      namespace: str | None = None, name: str | None = None) -> bool:
        """Recompute the operator's status fields from the cluster as `patch_status` reads it
        (so a refresh needs no separate read of the cluster) and write them if they changed."""
        namespace = namespace or cluster.namespace  # type: ignore[union-attr]
        name = name or cluster.name  # type: ignore[union-attr]
        before: dict[str, Any] = {}
        after: dict[str, Any] = {}

        def mutate(status: dict[str, Any], current: dict[str, Any]) -> None:
            live = Cluster.from_body(current)
            generation = current["metadata"].get("generation", 0)
            observed = self._observe(live, seen)
            conditions = compute_conditions(live, observed)
            before.clear()
            before.update(status)
            status["conditions"] = merge_conditions(status.get("conditions") or [], conditions,
                                                    generation)
            status.update(compute_status(live, observed, generation, status.get("pools")))
            after.update(body=current, observed=observed, conditions=conditions)

        written = patch_status(self.custom, namespace, name, mutate)
        observed = after.get("observed")
        if observed is not None:
            OPERATOR_METRICS.observe_workers(namespace, name, observed.workers.replicas,
                                             observed.workers.ready)
        if written:
            self._emit_transitions(after["body"], before, after["observed"], after["conditions"])
        return written

    def _emit_transitions(self, body: dict[str, Any], before: dict[str, Any],
                          observed: Observed, conditions: list[dict[str, str]]) -> None:
        old_workers = (before.get("workers") or {}).get("replicas")
        new_workers = observed.workers.replicas
        if observed.workers.exists and old_workers is not None and old_workers != new_workers:
            emit_event(self.core, body, "Normal", "ScaledWorkers",
                       f"worker replicas {old_workers} -> {new_workers} "
                       f"(spec.workers.replicas, the scale subresource)")
        for cond in conditions:
            old = get_condition(before, cond["type"])
            if old is not None and old.get("status") == cond["status"] \
                    and old.get("reason") == cond["reason"]:
                continue
            if cond["type"] in ("Degraded", "Deprecated") and cond["status"] == "True":
                emit_event(self.core, body, "Warning", cond["reason"], cond["message"])
            elif cond["type"] == "Ready" and cond["status"] == "True":
                emit_event(self.core, body, "Normal", "Ready", cond["message"])
            elif cond["type"] == "Ready" and old is not None and old.get("status") == "True":
                emit_event(self.core, body, "Warning", cond["reason"], cond["message"])


def _owner_uid(child: dict[str, Any]) -> str | None:
    for ref in child["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == crd.KIND and ref.get("controller"):
            return ref.get("uid")
    return None


def _load_balancer_endpoint(cluster: Cluster, service: dict[str, Any]) -> str | None:
    if cluster.spec["gateway"]["service"]["type"] != "LoadBalancer":
        return None
    ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress")
    if not ingress:
        return None
    host = ingress[0].get("ip") or ingress[0].get("hostname")
    return f"http://{host}:{cluster.spec['gateway']['service']['port']}"


# --- the process-wide reconciler ----------------------------------------------------------------
_lock = threading.Lock()
_reconciler: Reconciler | None = None


def configure(api: client.ApiClient) -> Reconciler:
    global _reconciler
    with _lock:
        _reconciler = Reconciler(api)
        return _reconciler


def get_reconciler() -> Reconciler:
    global _reconciler
    with _lock:
        if _reconciler is None:
            _reconciler = Reconciler(kube.load_config())
        return _reconciler


def reconcile(body: dict[str, Any]) -> ReconcileResult:
    return get_reconciler().reconcile(body)
