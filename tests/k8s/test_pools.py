"""Model pools (`spec.pools`) on the real control plane, and the single-model form's upgrade.

The two-pool example as shipped (auth on, autoscaling on) is applied; the operator renders a
worker fleet per pool and one gateway, and the real gateway process runs from that gateway's
Deployment (its pools file from the ConfigMap, per-pool EndpointSlice discovery under its own
ServiceAccount). Streams held on the English pool's (fake, real-frames) worker make that pool's
queue; the autoscaler scales the English pool and leaves the Arabic pool's Deployment as it
was. The single-model example, whose children a pre-pools operator rendered
(fixtures/single_model_children_before_pools.json), is adopted by this operator in place.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from orpheus_operator import crd
from orpheus_operator.autoscaler.controller import METRICS_URL_ANNOTATION
from orpheus_tts import protocol as p
from tests.k8s.controlplane import ControlPlane
from tests.k8s.deployed_gateway import DeployedGateway
from tests.k8s.test_autoscaler import (CRD_FILE, HeldStreams, auth_system, host_address,
                                      publish_worker)
from tests.k8s.test_operator import condition, events, get, wait_ready, wait_until
from tests.operator.operator_proc import OperatorProcess
from tests.support.fake_server import FakeServer

ROOT = Path(__file__).resolve().parents[2]
POOLS_EXAMPLE = ROOT / "examples" / "orpheus-cluster-pools.yaml"
SINGLE_EXAMPLE = ROOT / "examples" / "orpheus-cluster.yaml"
BEFORE_POOLS = Path(__file__).parent / "fixtures" / "single_model_children_before_pools.json"
ENGLISH, ARABIC = "canopylabs/orpheus-3b-0.1-ft", "canopylabs/orpheus-arabic-saudi"


def _docs(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return (next(d for d in docs if d["kind"] == "Secret"),
            next(d for d in docs if d["kind"] == crd.KIND))


def _install_crd(plane: ControlPlane) -> None:
    plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))
    plane.kubectl("wait", "--for=condition=established", "--timeout=60s",
                  f"crd/{crd.PLURAL}.{crd.GROUP}")


def _operator(plane: ControlPlane, namespace: str, log: Path) -> OperatorProcess:
    return OperatorProcess(plane.kubeconfig, log,
                           extra_args=["--standalone", "--namespace", namespace, "-v"])


@pytest.fixture
def operator(control_plane: ControlPlane, namespace: str, tmp_path: Path
             ) -> Iterator[OperatorProcess]:
    _install_crd(control_plane)
    process = _operator(control_plane, namespace, tmp_path / "operator.log")
    process.start()
    try:
        yield process
    finally:
        process.stop()


def _names(plane: ControlPlane, namespace: str, kind: str, selector: str = "") -> set[str]:
    args = ["get", kind, "-n", namespace, "-o", "json"] + (["-l", selector] if selector else [])
    return {o["metadata"]["name"] for o in json.loads(plane.kubectl(*args).stdout)["items"]}


def _labels(match: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in match.items())


def test_two_pools_render_a_fleet_each_one_gateway_and_scale_apart(
        control_plane: ControlPlane, namespace: str, operator: OperatorProcess,
        tmp_path: Path) -> None:
    plane = control_plane
    secret, cluster = _docs(POOLS_EXAMPLE)
    assert cluster["spec"]["autoscaling"]["enabled"] and cluster["spec"]["gateway"]["auth"][
        "enabled"]  # as shipped
    cluster["spec"]["autoscaling"].update(intervalSeconds=1)  # a faster tick, nothing else
    plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": [secret, cluster]}))
    obj = wait_ready(plane, namespace, operator, name="babel")

    # Two worker fleets (Deployment, headless Service, PDB) and one gateway.
    assert _names(plane, namespace, "deployment") == {
        "babel-english-worker", "babel-arabic-worker", "babel-gateway"}
    assert _names(plane, namespace, "poddisruptionbudget") == {
        "babel-english-worker", "babel-arabic-worker", "babel-gateway"}
    assert {"babel-english-workers", "babel-arabic-workers"} <= _names(
        plane, namespace, "service")
    pods = {}
    for pool in ("english", "arabic"):
        dep = get(plane, namespace, "deployment", f"babel-{pool}-worker")
        container = dep["spec"]["template"]["spec"]["containers"][0]
        assert container["startupProbe"]["httpGet"]["path"] == "/startupz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
        pods[pool] = _names(plane, namespace, "pods", _labels(dep["spec"]["selector"][
            "matchLabels"]))
        assert len(pods[pool]) == 1
        budget = get(plane, namespace, "poddisruptionbudget", f"babel-{pool}-worker")
        assert _names(plane, namespace, "pods", _labels(
            budget["spec"]["selector"]["matchLabels"])) == pods[pool]
    # The one NetworkPolicy admits the gateway's pods, to every pool's workers.
    (policy_name,) = _names(plane, namespace, "networkpolicy")
    policy = get(plane, namespace, "networkpolicy", policy_name)["spec"]
    assert _names(plane, namespace, "pods", _labels(policy["podSelector"]["matchLabels"])) == \
        pods["english"] | pods["arabic"]
    assert _names(plane, namespace, "pods", _labels(
        policy["ingress"][0]["from"][0]["podSelector"]["matchLabels"])) == _names(
        plane, namespace, "pods", "app.kubernetes.io/component=gateway")

    status = obj["status"]
    assert [(b["name"], b["model"], b["summary"], b["ready"]) for b in status["pools"]] == [
        ("english", ENGLISH, "1/1", True), ("arabic", ARABIC, "1/1", True)]
    assert status["poolsReady"] == "2/2" and status["workers"]["summary"] == "2/2"
    header, row = plane.kubectl("get", "otts", "babel", "-n", namespace).stdout.splitlines()
    assert "POOLS" in header.split() and row.split()[-2] == "2/2", (header, row)

    # The real gateway, as deployed: both pools from the pools file, each discovered apart.
    gateway = DeployedGateway.from_deployment(plane, namespace, "babel-gateway", tmp_path)
    gateway.start()
    try:
        user = {"Authorization": f"Bearer {secret['stringData']['keys'].strip()}"}
        system = httpx.get(gateway.url + p.SYSTEM_PATH, headers=auth_system(gateway),
                           timeout=5).json()
        assert {(pool["name"], tuple(pool["models"])) for pool in system["pools"]} == {
            ("english", (ENGLISH,)), ("arabic", (ARABIC,))}
        assert "noura" in next(pl for pl in system["pools"] if pl["name"] == "arabic")["voices"]
        unknown = httpx.post(gateway.url + "/v1/audio/speech", headers=user, timeout=10,
                             json={"model": "orpheus-hindi", "input": "hi", "voice": "tara"})
        assert unknown.status_code == 400
        assert ENGLISH in unknown.text and ARABIC in unknown.text
        plane.kubectl("annotate", "-n", namespace, f"{crd.PLURAL}/babel",
                      f"{METRICS_URL_ANNOTATION}={gateway.url}")

        arabic_before = get(plane, namespace, "deployment", "babel-arabic-worker")
        with FakeServer(capacity=4, host=host_address()) as worker:
            publish_worker(plane, namespace, worker, service="babel-english-workers")
            held = HeldStreams(gateway.url, user["Authorization"].removeprefix("Bearer "), 6,
                               model=ENGLISH)
            try:
                held.wait_first_audio()
                wait_until("the English pool's spec to grow", lambda: get(
                    plane, namespace, crd.PLURAL, "babel")["spec"]["pools"][0].get(
                    "workers", {}).get("replicas", 1) >= 2, 60, operator)
                wait_until("the English Deployment to follow", lambda: get(
                    plane, namespace, "deployment", "babel-english-worker")["spec"][
                    "replicas"] >= 2, 30, operator)
            finally:
                held.close()
            assert not held.errors, held.errors
    finally:
        gateway.stop()

    # The Arabic pool was left alone: same object, same generation, same count, own spec.
    arabic = get(plane, namespace, "deployment", "babel-arabic-worker")
    assert (arabic["metadata"]["uid"], arabic["metadata"]["generation"],
            arabic["spec"]["replicas"]) == (arabic_before["metadata"]["uid"],
                                            arabic_before["metadata"]["generation"], 1)
    live = get(plane, namespace, crd.PLURAL, "babel")
    assert live["spec"]["pools"][1]["workers"] == cluster["spec"]["pools"][1]["workers"] == {
        "maxReplicas": 2}  # no count written into the Arabic pool's spec
    blocks = {b["name"]: b for b in live["status"]["pools"]}
    assert blocks["english"]["lastScaleReason"] and "lastScaleTime" not in blocks["arabic"]
    auto = live["status"]["autoscaler"]["pools"]
    assert [(h["from"], h["to"] >= 2) for h in auto["english"]["history"]][0] == (1, True)
    assert auto["arabic"]["history"] == []
    assert any(e["reason"] == "ScaledUp" and "pool english" in e["message"]
               for e in events(plane, namespace, "babel"))

    # A pool removed from the spec: its workers scaled to zero (the operator never deletes),
    # the other pool untouched; put back, it returns at its own count.
    english = get(plane, namespace, "deployment", "babel-english-worker")["metadata"]
    plane.kubectl("patch", f"{crd.PLURAL}/babel", "-n", namespace, "--type=json", "-p",
                  json.dumps([{"op": "remove", "path": "/spec/pools/1"}]))
    wait_until("the Arabic workers scaled to zero", lambda: get(
        plane, namespace, "deployment", "babel-arabic-worker")["spec"]["replicas"] == 0,
        30, operator)
    live = wait_until("status without the Arabic pool", lambda: (
        lambda o: o if [b["name"] for b in o["status"]["pools"]] == ["english"] else None)(
        get(plane, namespace, crd.PLURAL, "babel")), 30, operator)
    assert live["status"]["poolsReady"] == "1/1"
    assert get(plane, namespace, "deployment", "babel-english-worker")["metadata"]["uid"] == \
        english["uid"]
    assert any(e["reason"] == "RetiredWorkers" and "babel-arabic-worker" in e["message"]
               for e in events(plane, namespace, "babel"))
    plane.kubectl("patch", f"{crd.PLURAL}/babel", "-n", namespace, "--type=json", "-p",
                  json.dumps([{"op": "add", "path": "/spec/pools/1",
                               "value": cluster["spec"]["pools"][1]}]))
    wait_until("the Arabic pool back at its count", lambda: get(
        plane, namespace, "deployment", "babel-arabic-worker")["spec"]["replicas"] == 1,
        30, operator)


REFUSED: list[tuple[Callable[[dict[str, Any]], None], str]] = [
    (lambda s: s["pools"].append({**s["pools"][0], "model": {"name": "x", "standIn": True}}),
     "Duplicate value"),
    (lambda s: s["pools"][1]["model"].update(name=ENGLISH), "spec.pools[].model.name must be "
                                                             "unique"),
    (lambda s: s.update(model={"standIn": True}), "not both"),
    (lambda s: s.update(defaultPool="hindi"), "spec.defaultPool must name one of spec.pools"),
    (lambda s: s["pools"][0]["model"].update(name="tts-1"), "name no model in particular"),
    (lambda s: s["gateway"].update(defaultVoice="tara"), "set voiceAliases and defaultVoice "
                                                         "per pool"),
    (lambda s: s["pools"][0].update(name="English"), "spec.pools[0].name"),
    (lambda s: s["pools"][0].update(name="e" * 32), "must fit 63 characters"),
]


def test_the_api_server_refuses_inconsistent_pools(control_plane: ControlPlane,
                                                   namespace: str) -> None:
    _install_crd(control_plane)
    for edit, message in REFUSED:
        _secret, cluster = _docs(POOLS_EXAMPLE)
        cluster["metadata"]["name"] = "b" * 30
        edit(cluster["spec"])
        result = control_plane.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-",
                                       input=json.dumps(cluster), check=False)
        assert result.returncode != 0 and message in result.stderr, (message, result.stderr)


def test_a_running_single_model_cluster_is_adopted_in_place(
        control_plane: ControlPlane, namespace: str, tmp_path: Path) -> None:
    """The children a pre-pools operator applied stay the same objects: no worker replaced."""
    plane = control_plane
    _install_crd(plane)
    secret, cluster = _docs(SINGLE_EXAMPLE)
    plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": [secret, cluster]}))
    uid = get(plane, namespace, crd.PLURAL, "demo")["metadata"]["uid"]
    before = BEFORE_POOLS.read_text().replace("__NAMESPACE__", namespace).replace(
        "__UID__", uid)
    plane.kubectl("apply", "--server-side", "--field-manager=orpheus-operator", "-f", "-",
                  input=json.dumps({"apiVersion": "v1", "kind": "List",
                                    "items": json.loads(before)}))
    worker_pods = "app.kubernetes.io/instance=demo,app.kubernetes.io/component=worker"
    pods = wait_until("the old operator's worker pod", lambda: _names(
        plane, namespace, "pods", worker_pods), 60)
    old = get(plane, namespace, "deployment", "demo-worker")
    replica_sets = _names(plane, namespace, "replicasets", worker_pods)

    operator = _operator(plane, namespace, tmp_path / "operator.log")
    operator.start()
    try:
        live = wait_until("the new operator's status", lambda: (
            lambda o: o if o and (o.get("status") or {}).get("poolsReady") == "1/1"
            and condition(o, "Ready").get("status") == "True" else None)(
            get(plane, namespace, crd.PLURAL, "demo")), 90, operator)
        assert [b["name"] for b in live["status"]["pools"]] == ["default"]
        assert condition(live, "Degraded")["status"] == "False"
        new = get(plane, namespace, "deployment", "demo-worker")
        a = json.dumps(old["spec"], indent=1, sort_keys=True).splitlines()
        b = json.dumps(new["spec"], indent=1, sort_keys=True).splitlines()
        assert a == b, "\n".join(difflib.unified_diff(a, b, lineterm=""))
        assert (new["metadata"]["uid"], new["metadata"]["generation"]) == (
            old["metadata"]["uid"], old["metadata"]["generation"])
        assert _names(plane, namespace, "replicasets", worker_pods) == replica_sets
        assert _names(plane, namespace, "pods", worker_pods) == pods
        assert _names(plane, namespace, "deployment") == {"demo-worker", "demo-gateway"}
    finally:
        operator.stop()
