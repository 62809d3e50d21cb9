"""Prometheus metrics of the operator (`orpheus_operator_` prefix), served on `--metrics`.

Labels are the cluster's namespace and name (bounded by the OrpheusClusters that exist) and
the decision's direction; series of a deleted cluster are dropped by `forget`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

DIRECTIONS = {1: "up", -1: "down", 0: "hold"}
CLUSTER = ["namespace", "cluster"]


class OperatorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.replicas = Gauge(
            "orpheus_operator_worker_replicas",
            "Worker replicas the worker Deployment requests.", CLUSTER, registry=r)
        self.ready_replicas = Gauge(
            "orpheus_operator_worker_ready_replicas",
            "Worker replicas that are ready.", CLUSTER, registry=r)
        self.desired_replicas = Gauge(
            "orpheus_operator_autoscaler_desired_replicas",
            "Worker replicas the autoscaler's last tick decided on.", CLUSTER, registry=r)
        self.decisions = Counter(
            "orpheus_operator_autoscaler_decisions_total",
            "Autoscaler ticks by decision: up, down or hold.", CLUSTER + ["direction"],
            registry=r)
        self.signal_errors = Counter(
            "orpheus_operator_autoscaler_signal_errors_total",
            "Autoscaler ticks that could not read their signals.", CLUSTER, registry=r)

    def observe_workers(self, namespace: str, cluster: str, replicas: int, ready: int) -> None:
        """The reconciler's view of the worker Deployment."""
        self.replicas.labels(namespace, cluster).set(replicas)
        self.ready_replicas.labels(namespace, cluster).set(ready)

    def observe_tick(self, namespace: str, cluster: str, desired: int, direction: int) -> None:
        """One autoscaler decision."""
        self.desired_replicas.labels(namespace, cluster).set(desired)
        self.decisions.labels(namespace, cluster, DIRECTIONS[direction]).inc()

    def observe_unavailable(self, namespace: str, cluster: str) -> None:
        self.signal_errors.labels(namespace, cluster).inc()

    def forget(self, namespace: str, cluster: str) -> None:
        """Drop a deleted cluster's series."""
        for metric in (self.replicas, self.ready_replicas, self.desired_replicas,
                       self.signal_errors):
            try:
                metric.remove(namespace, cluster)
            except KeyError:
                pass
        for direction in DIRECTIONS.values():
            try:
                self.decisions.remove(namespace, cluster, direction)
            except KeyError:
                pass


# The operator process's registry: its autoscaler ticks write here, `--metrics` serves it.
OPERATOR_METRICS = OperatorMetrics()


def serve(address: str, metrics: OperatorMetrics = OPERATOR_METRICS) -> None:
    """Serve `metrics` over HTTP at `HOST:PORT` (every path answers with the exposition)."""
    from prometheus_client import start_http_server

    host, _, port = address.rpartition(":")
    start_http_server(int(port), addr=host or "0.0.0.0", registry=metrics.registry)
