"""kopf glue: one daemon per `OrpheusCluster`.

Importing this module registers the daemon on kopf's default registry (the operator's entry
point imports it). The daemon ticks every `spec.autoscaling.intervalSeconds` (re-read each
time) until the cluster is deleted: it always observes the gateway (status.metrics), and
decides and scales only while `spec.autoscaling.enabled`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import kopf

from .. import crd
from ..kube import plain
from ..reconcile import get_reconciler
from .controller import AutoscalerController
from .policy import DEFAULT_INTERVAL_S

log = logging.getLogger(__name__)

ERROR_BACKOFF_S = 10.0


def _interval(body: Any) -> float:
    seconds = ((body.get("spec") or {}).get("autoscaling") or {}).get("intervalSeconds")
    return float(seconds) if seconds else DEFAULT_INTERVAL_S


@kopf.daemon(crd.GROUP, crd.VERSION, crd.PLURAL, id="autoscaler", cancellation_timeout=5.0)
def autoscale(body: kopf.Body, stopped: kopf.DaemonStopped, logger: Any, **_: Any) -> None:
    """Tick until stopped; a failed tick is logged and retried after a short back-off."""
    controller = AutoscalerController(get_reconciler().api, clock=time.time)
    namespace, name = body.metadata["namespace"], body.metadata["name"]
    while not stopped:
        delay = _interval(plain({"spec": body.spec}))
        try:
            # Read the object fresh: the state our last tick wrote may not have reached kopf's
            # watch yet, and a stale state would forget a recommendation.
            controller.tick_named(namespace, name)
        except Exception as exc:  # noqa: BLE001 - a daemon must outlive API hiccups
            logger.warning("autoscaler tick failed: %s", exc)
            delay = min(delay, ERROR_BACKOFF_S)
        stopped.wait(delay)

