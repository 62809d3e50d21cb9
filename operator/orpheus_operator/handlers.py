"""kopf glue: every event on an `OrpheusCluster` becomes one `reconcile(body)` call.

Create, update (spec, including the scale subresource), resume (operator start), a resync timer
(status refresh, drift repair, late Secrets) and any change to a child Deployment all do the same
idempotent pass. There is no
delete handler: children carry ownerReferences and the garbage collector removes them with the
cluster. (kopf keeps its finalizer, `tts.orpheus.dev/operator`, on each cluster while timers run
for it, and removes it on deletion.)
"""

from __future__ import annotations

import logging
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from . import crd
from .kube import plain
from .cluster import MANAGED_BY
from .reconcile import TransientError, get_reconciler
from .status import Problem, condition, merge_conditions, patch_status

log = logging.getLogger(__name__)

TRANSIENT_RETRY_SECONDS = 10
API_ERROR_RETRY_SECONDS = 30


def reconcile_or_retry(body: kopf.Body) -> None:
    """Run one pass; map failures onto kopf's retry semantics without crash-looping."""
    cluster: dict[str, Any] = plain(body)
    reconciler = get_reconciler()
    try:
        result = reconciler.reconcile(cluster)
        log.debug("%s/%s reconciled: %d API calls", cluster["metadata"]["namespace"],
                  cluster["metadata"]["name"], result.api_calls)
    except TransientError as exc:
        raise kopf.TemporaryError(str(exc), delay=TRANSIENT_RETRY_SECONDS) from exc
    except ApiException as exc:
        # Forbidden, invalid and the like: say so on the object, retry later (an admin may fix
        # RBAC or the spec), never crash the operator.
        message = f"API error {exc.status} {exc.reason}: {exc.body or ''}"[:900]
        _mark_degraded(cluster, Problem("ApiError", message))
        raise kopf.TemporaryError(message, delay=API_ERROR_RETRY_SECONDS) from exc
    for problem in result.problems:
        log.warning("%s/%s degraded: %s", cluster["metadata"]["namespace"],
                    cluster["metadata"]["name"], problem.message)


def owning_cluster(body: dict[str, Any]) -> str | None:
    """The name of the OrpheusCluster that controls this child, if any."""
    for ref in (body.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == crd.KIND and ref.get("apiVersion") == crd.API_VERSION \
                and ref.get("controller"):
            return ref.get("name")
    return None


def _mark_degraded(body: dict[str, Any], problem: Problem) -> None:
    meta = body["metadata"]

    def mutate(status: dict[str, Any], _cluster: dict[str, Any]) -> None:
        status["conditions"] = merge_conditions(
            status.get("conditions") or [],
            [condition("Degraded", "True", problem.reason, problem.message),
             condition("Ready", "False", problem.reason, "Degraded: " + problem.message)],
            meta.get("generation"))

    try:
        patch_status(get_reconciler().custom, meta["namespace"], meta["name"], mutate)
    except ApiException as exc:
        log.warning("could not mark %s/%s degraded: %s", meta["namespace"], meta["name"], exc)


def register(registry: kopf.OperatorRegistry, resync_seconds: float) -> None:
    """Register the handlers on `registry`."""
    resource = (crd.GROUP, crd.VERSION, crd.PLURAL)

    @kopf.on.resume(*resource, registry=registry, id="reconcile")
    @kopf.on.create(*resource, registry=registry, id="reconcile")
    @kopf.on.update(*resource, registry=registry, id="reconcile", field="spec")
    def on_change(body: kopf.Body, **_: Any) -> None:
        reconcile_or_retry(body)

    # A worker or gateway Deployment changed (pods became ready, someone scaled, edited or
    # deleted it): refresh the owner's status; drift is put back now, not at the next resync.
    @kopf.on.event("apps", "v1", "deployments", registry=registry, id="child-changed",
                   labels={"app.kubernetes.io/managed-by": MANAGED_BY})
    def child_changed(body: kopf.Body, namespace: str, type: str | None, **_: Any) -> None:
        deployment = plain(body)
        owner = owning_cluster(deployment)
        if owner is None:
            return
        if type == "DELETED":
            deployment["metadata"]["generation"] = -1  # never what was applied: a full pass
        try:
            result = get_reconciler().refresh(namespace, owner, deployment)
            log.debug("%s/%s refreshed after a Deployment event (%s): %d API calls",
                      namespace, owner, "full pass" if result.full else "status only",
                      result.api_calls)
        except (TransientError, ApiException) as exc:
            log.warning("refreshing %s/%s after a Deployment change failed (the resync timer "
                        "retries): %s", namespace, owner, exc)

    @kopf.timer(*resource, registry=registry, id="resync", interval=resync_seconds,
                initial_delay=resync_seconds)
    def resync(body: kopf.Body, **_: Any) -> None:
        reconcile_or_retry(body)
