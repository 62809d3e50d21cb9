"""The autoscaler inside the real operator, reading the real gateway as the operator deployed it.

The example cluster as shipped (auth on, autoscaling on) is applied to the real control plane;
the operator (a child process, watching only this test's namespace) renders the gateway
Deployment and creates the system-key Secret; `DeployedGateway` runs the real gateway process
from that Deployment (its args, env, mounted key files, its ServiceAccount's token). The only
thing the operator is told is where that process listens (`tts.orpheus.dev/metrics-url`: the
Service's DNS name does not resolve outside a cluster); it authenticates with the system key
exactly as in a cluster. kwok plays the kubelet for the worker pods, whose addresses lead
nowhere; the streams that make load are served by a fake worker (the v1 contract, real frames)
published through an EndpointSlice of the workers' Service, which the gateway discovers as it
would a pod.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml

from orpheus_operator import crd
from orpheus_operator.autoscaler.controller import METRICS_URL_ANNOTATION
from orpheus_tts import protocol as p
from tests.k8s.controlplane import ControlPlane
from tests.k8s.deployed_gateway import DeployedGateway
from tests.k8s.test_operator import condition, events, get, wait_until
from tests.operator.operator_proc import OperatorProcess
from tests.support.fake_server import FakeServer
from tests.support.promtool import check_metrics

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "operator" / "orpheus_operator" / "crds" / "orpheusclusters.yaml"
EXAMPLE = ROOT / "examples" / "orpheus-cluster.yaml"
CAPACITY = 4  # the fake worker's concurrent streams, as the example's engine.maxNumSeqs


def example() -> tuple[dict[str, Any], dict[str, Any]]:
    docs = list(yaml.safe_load_all(EXAMPLE.read_text()))
    return (next(d for d in docs if d["kind"] == "Secret"),
            next(d for d in docs if d["kind"] == crd.KIND))


def user_key() -> str:
    secret, cluster = example()
    return secret["stringData"][cluster["spec"]["gateway"]["auth"]["secretRef"]["key"]].strip()


@pytest.fixture
def operator(control_plane: ControlPlane, namespace: str, tmp_path: Path
             ) -> Iterator[OperatorProcess]:
    plane = control_plane
    plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))
    plane.kubectl("wait", "--for=condition=established", "--timeout=60s",
                  f"crd/{crd.PLURAL}.{crd.GROUP}")
    process = OperatorProcess(plane.kubeconfig, tmp_path / "operator.log",
                              extra_args=["--standalone", "--namespace", namespace, "-v"])
    process.start()
    try:
        yield process
    finally:
        process.stop()


def apply_example(plane: ControlPlane, namespace: str,
                  edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    secret, cluster = example()
    assert cluster["spec"]["autoscaling"]["enabled"] is True  # as shipped
    assert cluster["spec"]["gateway"]["auth"]["enabled"] is True
    edit(cluster["spec"])
    plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": [secret, cluster]}))
    return cluster


@pytest.fixture
def deployed_gateway(control_plane: ControlPlane, namespace: str, operator: OperatorProcess,
                     tmp_path: Path) -> Callable[[], DeployedGateway]:
    started: list[DeployedGateway] = []

    def start() -> DeployedGateway:
        plane = control_plane
        wait_until("the gateway Deployment and the system-key Secret", lambda: get(
            plane, namespace, "deployment", "demo-gateway") and get(
            plane, namespace, "secret", "demo-system-key"), 60, operator)
        gateway = DeployedGateway.from_deployment(plane, namespace, "demo-gateway", tmp_path)
        started.append(gateway)
        gateway.start()
        plane.kubectl("annotate", "-n", namespace, f"{crd.PLURAL}/demo",
                      f"{METRICS_URL_ANNOTATION}={gateway.url}")
        return gateway

    yield start
    for gateway in started:
        gateway.stop()


def host_address() -> str:
    """A non-loopback IPv4 address of this machine: the API server refuses loopback endpoint
    addresses, as it would a pod's."""
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not address.address.startswith(
                    ("127.", "169.254.")):
                return address.address
    pytest.fail("no non-loopback IPv4 address to publish a worker on")


def publish_worker(plane: ControlPlane, namespace: str, worker: FakeServer,
                   service: str = "demo-workers") -> None:
    """An EndpointSlice (`SERVICE-test`) of the workers' Service with the fake worker's
    address."""
    plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"{service}-test", "labels": {
            "kubernetes.io/service-name": service,
            "endpointslice.kubernetes.io/managed-by": "tests.orpheus.dev"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": worker.port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [worker.host], "conditions": {"ready": True}}],
    }))


class HeldStreams:
    """`n` v1 streams through the gateway, each held open after its first audio chunk (for
    `model`'s pool when given)."""

    def __init__(self, url: str, key: str, n: int, model: str | None = None):
        self.model = model
        self.release = threading.Event()
        self.first_audio = threading.Semaphore(0)
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._hold, args=(url, key), daemon=True)
                        for _ in range(n)]
        for thread in self.threads:
            thread.start()

    def _hold(self, url: str, key: str) -> None:
        body = {"text": "[[fake kind=stall chunks=1]] Hold the line.", "timeout_s": 120,
                **({"model": self.model} if self.model else {})}
        try:
            with httpx.stream("POST", url + p.STREAM_PATH, json=body, timeout=130,
                              headers={"Authorization": f"Bearer {key}"}) as response:
                if response.status_code != 200:
                    self.errors.append(f"{response.status_code}: {response.read()!r}")
                    return
                lines = response.iter_lines()  # kept: a dropped iterator closes the response
                for line in lines:
                    if line.encode().startswith(p.CHUNK_LINE_PREFIX):
                        self.first_audio.release()
                        break
                self.release.wait(120)
                lines.close()
        except httpx.HTTPError as exc:
            self.errors.append(repr(exc))

    def wait_first_audio(self, timeout: float = 30) -> None:
        for _ in self.threads:
            assert self.first_audio.acquire(timeout=timeout), self.errors

    def close(self) -> None:
        self.release.set()
        for thread in self.threads:
            thread.join(timeout=10)


def auth_system(gateway: DeployedGateway) -> dict[str, str]:
    """The system key, as the gateway process read it from the operator's Secret."""
    path = Path(gateway.argv[gateway.argv.index("--system-keys-file") + 1])
    return {"Authorization": f"Bearer {path.read_text().strip()}"}


def printer_row(plane: ControlPlane, namespace: str) -> dict[str, Any]:
    """The cluster's row as `kubectl get otts` prints it: the API server's Table rendering of
    the CRD's printer columns (column name -> cell; a missing value is None)."""
    api = plane.api_client()
    try:
        request = api.param_serialize(
            method="GET", resource_path=f"/apis/{crd.API_VERSION}/namespaces/{namespace}/"
                                        f"{crd.PLURAL}/demo",
            header_params={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
            auth_settings=["BearerToken"])
        response = api.call_api(*request)
        response.read()
        table = json.loads(response.data)
    finally:
        api.close()
    names = [c["name"] for c in table["columnDefinitions"]]
    return dict(zip(names, table["rows"][0]["cells"]))


def test_the_autoscaler_reads_the_deployed_gateway_and_scales_under_held_streams(
        control_plane: ControlPlane, namespace: str, operator: OperatorProcess,
        deployed_gateway: Callable[[], DeployedGateway]) -> None:
    plane = control_plane

    def fast(spec: dict[str, Any]) -> None:
        spec["autoscaling"].update(intervalSeconds=1, scaleDownStabilizationSeconds=5,
                                   maxScaleDownStep=4)

    apply_example(plane, namespace, fast)
    gateway = deployed_gateway()

    def cluster() -> dict[str, Any]:
        return get(plane, namespace, crd.PLURAL, "demo") or {}

    def worker_replicas() -> int:
        return (get(plane, namespace, "deployment", "demo-worker") or {}).get(
            "spec", {}).get("replicas", -1)

    # The autoscaler reads the gateway with the system key (auth is on) and holds one worker.
    wait_until("ScalingActive from signals read", lambda: condition(
        cluster(), "ScalingActive").get("reason") == "SignalsRead", 60, operator)
    assert worker_replicas() == 1
    assert printer_row(plane, namespace)["Queue"] == 0
    # No key, or the user's key only where it belongs: the gateway's auth is really on.
    assert httpx.get(gateway.url + p.SYSTEM_PATH, timeout=5).status_code == 401
    assert httpx.post(gateway.url + p.STREAM_PATH, json={"text": "hi"}, timeout=5,
                      headers=auth_system(gateway)).status_code == 401

    with FakeServer(capacity=CAPACITY, host=host_address()) as worker:
        publish_worker(plane, namespace, worker)
        held = HeldStreams(gateway.url, user_key(), 6)
        try:
            held.wait_first_audio()
            # 6 streams on one worker of 4 slots, run at 80 %: 6 / 3.2 -> 2 workers.
            try:
                wait_until("the worker count to grow through /scale", lambda: cluster().get(
                    "spec", {}).get("workers", {}).get("replicas", 1) >= 2, 60)
            except AssertionError as exc:
                status = cluster().get("status") or {}
                failures = [line for line in operator.log().splitlines()
                            if "tick failed" in line or "/scale" in line][-5:]
                raise AssertionError(f"{exc}\nautoscaler: {status.get('autoscaler')}\n"
                                     f"metrics: {status.get('metrics')}\n{failures}\n"
                                     f"{httpx.get(gateway.url + p.SYSTEM_PATH, headers=auth_system(gateway)).text}"
                                     ) from None
            wait_until("the worker Deployment to follow the spec",
                       lambda: worker_replicas() >= 2, 30, operator)
            # The operator's /metrics says what the autoscaler did, in names promtool accepts.
            scaled_up = (f'orpheus_operator_autoscaler_decisions_total{{cluster="demo",'
                         f'direction="up",namespace="{namespace}"}}')
            text = wait_until("the scale-up in the operator's metrics", lambda: (
                lambda t: t if scaled_up in t else None)(operator.metrics()), 30, operator)
            assert check_metrics(text) == ""
            row = wait_until("queue and TTFA in kubectl get", lambda: (lambda r: r if r.get(
                "TTFA p95") is not None else None)(printer_row(plane, namespace)), 30, operator)
            assert row["TTFA p95"] > 0 and isinstance(row["Queue"], int)
        finally:
            held.close()
        assert not held.errors, held.errors
        wait_until("back down to minReplicas after the streams ended",
                   lambda: cluster()["spec"]["workers"]["replicas"] == 1, 90, operator)

    status = cluster()["status"]
    history = [(h["from"], h["to"]) for h in status["autoscaler"]["history"]]
    assert history[0][0] == 1 and history[0][1] >= 2 and history[-1][1] == 1, history
    assert "desiredReplicas" not in status["autoscaler"]
    reasons = {e["reason"] for e in events(plane, namespace, "demo")}
    assert {"ScaledUp", "ScaledDown"} <= reasons
    wait_until("the Deployment back at one worker", lambda: worker_replicas() == 1, 30, operator)

    # A Deployment event (a pod turned ready, a rollout step) costs a status read and at most
    # a status write and an Event; a full pass its applies (docs/operator.md has the numbers).
    refreshes = [int(m) for m in re.findall(r"Deployment event \(status only\): (\d+) API calls",
                                            operator.log())]
    full = [int(m) for m in re.findall(r"reconciled: (\d+) API calls", operator.log())]
    # The autoscaler patches status every tick too, so a refresh's status patch may meet a 409
    # and retry once (a read and a write more); typical refreshes stay within three calls.
    assert refreshes and sorted(refreshes)[len(refreshes) // 2] <= 3, refreshes
    assert max(refreshes) <= 5, refreshes
    assert full and min(full) >= 10, full

    # Observe-only: with autoscaling off the columns still follow the gateway, and nothing
    # scales. The worker is gone; a request the gateway holds shows up as queue.
    plane.kubectl("patch", f"{crd.PLURAL}/demo", "-n", namespace, "--type=merge",
                  "-p", json.dumps({"spec": {"autoscaling": {"enabled": False}}}))
    wait_until("ScalingActive AutoscalingDisabled", lambda: condition(
        cluster(), "ScalingActive").get("reason") == "AutoscalingDisabled", 30, operator)
    plane.kubectl("delete", "endpointslice", "demo-workers-test", "-n", namespace)
    held_alone = threading.Thread(target=lambda: httpx.post(
        gateway.url + p.STREAM_PATH, json={"text": "Anyone?", "timeout_s": 15},
        headers={"Authorization": f"Bearer {user_key()}"}, timeout=30), daemon=True)
    held_alone.start()
    wait_until("the held request in the Queue column", lambda: printer_row(
        plane, namespace)["Queue"] == 1, 30, operator)
    assert cluster()["spec"]["workers"]["replicas"] == 1
    held_alone.join(30)


def test_min_zero_scales_from_zero_on_pending_demand_and_back_after_idle(
        control_plane: ControlPlane, namespace: str, operator: OperatorProcess,
        deployed_gateway: Callable[[], DeployedGateway]) -> None:
    plane = control_plane

    def to_zero(spec: dict[str, Any]) -> None:
        spec["workers"].update(replicas=0, minReplicas=0, maxReplicas=2)
        spec["autoscaling"].update(intervalSeconds=1, scaleDownStabilizationSeconds=5)

    apply_example(plane, namespace, to_zero)
    gateway = deployed_gateway()

    def cluster() -> dict[str, Any]:
        return get(plane, namespace, crd.PLURAL, "demo") or {}

    wait_until("ScalingActive at zero workers", lambda: condition(
        cluster(), "ScalingActive").get("reason") == "SignalsRead", 60, operator)
    assert get(plane, namespace, "deployment", "demo-worker")["spec"]["replicas"] == 0
    assert condition(cluster(), "Ready")["reason"] == "ScaledToZero"
    # The gateway stays Ready with no worker (its Service keeps its endpoints).
    assert httpx.get(gateway.url + "/readyz", timeout=5).status_code == 200

    # One request, held by the gateway: pending demand, and the autoscaler starts a worker.
    outcome: dict[str, Any] = {}

    def request() -> None:
        try:
            outcome["response"] = httpx.post(
                gateway.url + p.STREAM_PATH, json={"text": "Anyone there?", "timeout_s": 12},
                headers={"Authorization": f"Bearer {user_key()}"}, timeout=30)
        except httpx.HTTPError as exc:
            outcome["error"] = repr(exc)

    caller = threading.Thread(target=request, daemon=True)
    caller.start()
    wait_until("0 -> 1 worker on the held request", lambda: cluster()["spec"]["workers"][
        "replicas"] == 1, 60, operator)
    assert cluster()["status"]["autoscaler"]["history"][0]["signals"]["queueDepth"] >= 1
    # kwok's pod has no real worker behind it: the request ends at its deadline, with the
    # v1 stream's error frame, and nothing is pending any more.
    caller.join(40)
    response = outcome["response"]
    frames = [p.decode_frame(line.encode()) for line in response.text.splitlines()]
    assert [f.type for f in frames if f is not None][-1] == "error"
    wait_until("back to 0 after the idle window", lambda: cluster()["spec"]["workers"][
        "replicas"] == 0, 90, operator)
    history = [(h["from"], h["to"]) for h in cluster()["status"]["autoscaler"]["history"]]
    assert history == [(0, 1), (1, 0)], history


def test_an_hpa_drives_the_cluster_through_its_scale_subresource(
        control_plane: ControlPlane, namespace: str, operator: OperatorProcess) -> None:
    """examples/orpheus-cluster-hpa.yaml on the real controller-manager: the HPA reads the
    cluster's /scale and writes it (here: its minReplicas, which it enforces before any
    metric is read, as no metrics adapter runs here); the operator follows."""
    plane = control_plane

    def manual(spec: dict[str, Any]) -> None:
        spec["autoscaling"]["enabled"] = False

    apply_example(plane, namespace, manual)
    hpa = yaml.safe_load((ROOT / "examples" / "orpheus-cluster-hpa.yaml").read_text())
    keda = yaml.safe_load((ROOT / "examples" / "orpheus-cluster-keda.yaml").read_text())
    assert keda["spec"]["scaleTargetRef"] == hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": crd.API_VERSION, "kind": crd.KIND, "name": "demo"}
    hpa["spec"]["minReplicas"] = 3
    plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(hpa))

    def cluster() -> dict[str, Any]:
        return get(plane, namespace, crd.PLURAL, "demo") or {}

    wait_until("the HPA to scale the cluster to its minReplicas",
               lambda: cluster().get("spec", {}).get("workers", {}).get("replicas") == 3,
               90, operator)
    wait_until("the worker Deployment to follow", lambda: get(
        plane, namespace, "deployment", "demo-worker")["spec"]["replicas"] == 3, 30, operator)
    status = get(plane, namespace, "hpa", "demo-workers")["status"]
    able = next(c for c in status["conditions"] if c["type"] == "AbleToScale")
    assert able["status"] == "True", status
    assert condition(cluster(), "ScalingActive")["reason"] == "AutoscalingDisabled"
