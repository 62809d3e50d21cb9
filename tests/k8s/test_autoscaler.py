"""The autoscaler inside the real operator, against the real control plane.

A fake gateway on loopback answers `/v1/system` with a queue that grows; the operator (a child
process, admin kubeconfig, watching only this test's namespace) reads it through the
`tts.orpheus.dev/metrics-url` annotation, grows the worker Deployment, records an Event, and
shows the decision in `status.autoscaler`. kwok plays the kubelet.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from orpheus_operator import crd
from orpheus_operator.autoscaler.controller import METRICS_URL_ANNOTATION
from tests.autoscale.fake_gateway import FakeGateway, gateway_snapshot
from tests.k8s.controlplane import ControlPlane
from tests.k8s.test_operator import condition, events, get, wait_until
from tests.operator.operator_proc import OperatorProcess
from tests.support.promtool import check_metrics

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "operator" / "orpheus_operator" / "crds" / "orpheusclusters.yaml"
EXAMPLE = ROOT / "examples" / "orpheus-cluster.yaml"
CAPACITY = 4  # the example's engine.maxNumSeqs


@pytest.fixture
def gateway() -> Iterator[FakeGateway]:
    with FakeGateway(gateway_snapshot(queue=0, inflight=1, ready=1, capacity=CAPACITY)) as fake:
        yield fake


@pytest.fixture
def autoscaled_cluster(control_plane: ControlPlane, namespace: str,
                       gateway: FakeGateway) -> dict:
    plane = control_plane
    plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))
    plane.kubectl("wait", "--for=condition=established", "--timeout=60s",
                  f"crd/{crd.PLURAL}.{crd.GROUP}")
    docs = list(yaml.safe_load_all(EXAMPLE.read_text()))
    cluster = next(d for d in docs if d["kind"] == crd.KIND)
    cluster["metadata"]["annotations"] = {METRICS_URL_ANNOTATION: gateway.url}
    cluster["spec"]["workers"].update(replicas=1, minReplicas=1, maxReplicas=6)
    cluster["spec"]["autoscaling"] = {
        "enabled": True, "intervalSeconds": 1, "targetQueueDepthPerWorker": 2.0,
        "targetTTFBp95Ms": 1000, "maxScaleUpStep": 3, "maxScaleDownStep": 1,
        "scaleUpStabilizationSeconds": 0, "scaleDownStabilizationSeconds": 300,
    }
    plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "List", "items": [*docs[:-1], cluster]}))
    return cluster


@pytest.fixture
def operator(control_plane: ControlPlane, namespace: str, autoscaled_cluster: dict,
             tmp_path: Path) -> Iterator[OperatorProcess]:
    process = OperatorProcess(control_plane.kubeconfig, tmp_path / "operator.log",
                              extra_args=["--standalone", "--namespace", namespace])
    process.start()
    try:
        yield process
    finally:
        process.stop()


def test_a_growing_queue_grows_the_worker_deployment(control_plane: ControlPlane,
                                                     namespace: str, gateway: FakeGateway,
                                                     operator: OperatorProcess) -> None:
    plane = control_plane

    def workers() -> dict:
        return get(plane, namespace, "deployment", "demo-worker") or {}

    def cluster() -> dict:
        return get(plane, namespace, crd.PLURAL, "demo") or {}

    # Light load: the autoscaler reads the gateway and holds one worker.
    wait_until("the autoscaler reading the gateway",
               lambda: (cluster().get("status") or {}).get("autoscaler", {}).get("lastTick"),
               60, operator)
    assert workers()["spec"]["replicas"] == 1
    assert condition(cluster(), "ScalingActive")["status"] == "True"
    assert not cluster()["status"]["autoscaler"].get("history")

    # The queue grows: 4 streams in flight and 6 waiting on the one ready worker.
    gateway.snapshot = gateway_snapshot(queue=6, inflight=4, ready=1, capacity=CAPACITY)
    wait_until("the worker Deployment to grow",
               lambda: workers().get("spec", {}).get("replicas", 1) > 1, 30, operator)
    first = workers()["spec"]["replicas"]
    # (4 + 6 - 2) streams at 80 % of 4 per worker = 2.5 -> 3 workers; a step is at most 3.
    assert first == 3

    gateway.snapshot = gateway_snapshot(queue=40, inflight=4, ready=1, capacity=CAPACITY)
    wait_until("the worker Deployment to reach the maximum",
               lambda: workers().get("spec", {}).get("replicas") == 6, 30, operator)

    status = cluster()["status"]
    auto = status["autoscaler"]
    assert auto["desiredReplicas"] == 6
    history = auto["history"]
    assert [(h["from"], h["to"]) for h in history] == [(1, 3), (3, 6)]
    assert history[0]["signals"]["queueDepth"] == 6 and history[1]["signals"]["queueDepth"] == 40
    assert "queued" in history[-1]["reason"]
    assert auto["state"]["recommendations"], "the policy's state lives in status"
    assert status["metrics"]["queueDepth"] == 40
    assert status["metrics"]["lastScaleReason"] == history[-1]["reason"]

    scaled = [e for e in events(plane, namespace, "demo") if e["reason"] == "ScaledUp"]
    assert {e["message"].split(":")[0] for e in scaled} == {"workers 1 -> 3", "workers 3 -> 6"}

    # kwok makes the new pods Ready; the operator reports them.
    wait_until("six ready workers in status",
               lambda: cluster()["status"]["workers"]["readyReplicas"] == 6, 60, operator)

    # The operator's /metrics says the same, in names Prometheus's linter accepts.
    labels = f'cluster="demo",namespace="{namespace}"'
    wait_until("the operator's metrics to show six ready workers",
               lambda: f"orpheus_operator_worker_ready_replicas{{{labels}}} 6.0"
               in operator.metrics(), 30, operator)
    text = operator.metrics()
    assert f"orpheus_operator_autoscaler_desired_replicas{{{labels}}} 6.0" in text
    assert ('orpheus_operator_autoscaler_decisions_total{cluster="demo",direction="up",'
            f'namespace="{namespace}"}} 2.0') in text
    assert check_metrics(text) == ""
