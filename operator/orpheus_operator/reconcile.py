"""One reconcile pass: from an `OrpheusCluster` body to applied children and a fresh status.

`reconcile(body)` is what every kopf handler (create, update, resume, the resync timer) calls,
and what the autoscaler calls after it changes `status.autoscaler.desiredReplicas`
(`reconcile_named(namespace, name)`). It is idempotent: applying unchanged manifests writes
nothing, and the status is written only when it differs.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from . import crd, kube
from .manifests import Cluster, Options, children, gateway_name, worker_name
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

AUTOSCALER_MODULE = "orpheus_operator.autoscaler.handlers"


class TransientError(Exception):
    """The API server could not be reached or answered 5xx: retry later."""


@dataclass
class ReconcileResult:
    applied: list[str] = field(default_factory=list)  # "Kind/name" of every child applied
    problems: list[Problem] = field(default_factory=list)
    status_written: bool = False


def autoscaler_installed() -> bool:
    try:
        return importlib.util.find_spec(AUTOSCALER_MODULE) is not None
    except ModuleNotFoundError:
        return False


class Reconciler:
    def __init__(self, api: client.ApiClient):
        self.api = api
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.autoscaler = autoscaler_installed()

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

    def options(self) -> Options:
        return Options(service_monitor=kube.api_group_served(self.api, "monitoring.coreos.com/v1",
                                                             "ServiceMonitor"))

    # --- the pass ----------------------------------------------------------------------------
    def reconcile(self, body: dict[str, Any]) -> ReconcileResult:
        try:
            return self._reconcile(body)
        except ApiException as exc:
            if exc.status is None or exc.status >= 500 or exc.status == 429:
                raise TransientError(f"API server: {exc.status} {exc.reason}") from exc
            raise
        except OSError as exc:  # connection refused/reset, timeouts
            raise TransientError(f"API server unreachable: {exc}") from exc

    def _reconcile(self, body: dict[str, Any]) -> ReconcileResult:
        result = ReconcileResult()
        if body["metadata"].get("deletionTimestamp"):
            OPERATOR_METRICS.forget(body["metadata"]["namespace"], body["metadata"]["name"])
            return result  # being deleted: the garbage collector takes the children
        cluster = Cluster.from_body(body)
        secret_problem = self.check_auth_secret(cluster)
        if secret_problem:
            result.problems.append(secret_problem)

        live: dict[str, dict[str, Any]] = {}
        for manifest in children(cluster, self.options()):
            ref = f"{manifest['kind']}/{manifest['metadata']['name']}"
            try:
                live[ref] = kube.apply(self.api, manifest)
                result.applied.append(ref)
            except ApiException as exc:
                if exc.status is None or exc.status >= 500 or exc.status == 429:
                    raise
                result.problems.append(Problem("ApplyFailed", f"{ref}: {api_message(exc)}"))

        observed = self._observe(cluster, live, result.problems)
        OPERATOR_METRICS.observe_workers(cluster.namespace, cluster.name,
                                         observed.workers.replicas, observed.workers.ready)
        result.status_written = self._write_status(body, cluster, observed)
        return result

    def _observe(self, cluster: Cluster, live: dict[str, dict[str, Any]],
                 problems: list[Problem]) -> Observed:
        def deployment(name: str) -> DeploymentState:
            obj = live.get(f"Deployment/{name}")
            if obj is None:
                return DeploymentState()
            return DeploymentState.from_status(obj["spec"].get("replicas", 0), obj.get("status"))

        endpoint = None
        service = live.get(f"Service/{gateway_name(cluster.name)}")
        if service and cluster.spec["gateway"]["service"]["type"] == "LoadBalancer":
            ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress")
            if ingress:
                host = ingress[0].get("ip") or ingress[0].get("hostname")
                endpoint = f"http://{host}:{cluster.spec['gateway']['service']['port']}"
        return Observed(workers=deployment(worker_name(cluster.name)),
                        gateway=deployment(gateway_name(cluster.name)),
                        endpoint=endpoint, problems=list(problems),
                        autoscaler_installed=self.autoscaler)

    def _write_status(self, body: dict[str, Any], cluster: Cluster, observed: Observed) -> bool:
        generation = body["metadata"].get("generation", 0)
        conditions = compute_conditions(cluster, observed)
        fields = compute_status(cluster, observed, generation)
        before: dict[str, Any] = {}

        def mutate(status: dict[str, Any]) -> None:
            before.clear()
            before.update(status)
            status["conditions"] = merge_conditions(status.get("conditions") or [], conditions,
                                                    generation)
            status.update(fields)

        written = patch_status(self.custom, cluster.namespace, cluster.name, mutate)
        if written:
            self._emit_transitions(body, before, observed, conditions)
        return written

    def _emit_transitions(self, body: dict[str, Any], before: dict[str, Any],
                          observed: Observed, conditions: list[dict[str, str]]) -> None:
        old_workers = (before.get("workers") or {}).get("replicas")
        new_workers = observed.workers.replicas
        if observed.workers.exists and old_workers is not None and old_workers != new_workers:
            source = ("the autoscaler" if Cluster.from_body(body).spec["autoscaling"]["enabled"]
                      else "spec.workers.replicas")
            emit_event(self.core, body, "Normal", "ScaledWorkers",
                       f"worker replicas {old_workers} -> {new_workers} (from {source})")
        for cond in conditions:
            old = get_condition(before, cond["type"])
            if old is not None and old.get("status") == cond["status"] \
                    and old.get("reason") == cond["reason"]:
                continue
            if cond["type"] == "Degraded" and cond["status"] == "True":
                emit_event(self.core, body, "Warning", cond["reason"], cond["message"])
            elif cond["type"] == "Ready" and cond["status"] == "True":
                emit_event(self.core, body, "Normal", "Ready", cond["message"])
            elif cond["type"] == "Ready" and old is not None and old.get("status") == "True":
                emit_event(self.core, body, "Warning", cond["reason"], cond["message"])


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


def reconcile_named(namespace: str, name: str) -> ReconcileResult | None:
    """Re-read the cluster and reconcile it (for the autoscaler); None if it is gone."""
    reconciler = get_reconciler()
    try:
        body = reconciler.custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, namespace,
                                                              crd.PLURAL, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return reconciler.reconcile(body)
