"""The operator against the real control plane, under the chart's own ServiceAccount.

The chart is installed with the built `helm`; the operator runs as a child process whose only
credential is a token of the chart's ServiceAccount (RBAC authorizer on), so a permission the
chart forgot fails these tests. kwok plays the kubelet: pods become Ready without running.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from orpheus_operator import crd
from tests.k8s.controlplane import ControlPlane
from tests.operator.operator_proc import OperatorProcess

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "orpheus-operator"
EXAMPLE = ROOT / "examples" / "orpheus-cluster.yaml"
RELEASE, RELEASE_NS = "orpheus", "orpheus-system"
SERVICE_ACCOUNT = "orpheus-orpheus-operator"  # the chart's fullname for release "orpheus"
CHILDREN = [("configmap", "demo-config"), ("serviceaccount", "demo-gateway"),
            ("role", "demo-gateway"), ("rolebinding", "demo-gateway"),
            ("networkpolicy", "demo-worker"),
            ("service", "demo-workers"), ("deployment", "demo-worker"),
            ("service", "demo-gateway"), ("deployment", "demo-gateway"),
            ("poddisruptionbudget", "demo-worker"), ("poddisruptionbudget", "demo-gateway")]

T = TypeVar("T")


def wait_until(what: str, probe: Callable[[], T], timeout: float = 60.0,
               operator: OperatorProcess | None = None) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            tail = f"\noperator log:\n{operator.log_tail()}" if operator else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{tail}")
        time.sleep(0.5)


def get(plane: ControlPlane, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
    result = plane.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond["type"] == type_:
            return cond
    return {}


def events(plane: ControlPlane, namespace: str, name: str) -> list[dict[str, Any]]:
    out = plane.kubectl("get", "events", "-n", namespace, "-o", "json",
                        f"--field-selector=involvedObject.name={name},"
                        f"involvedObject.kind={crd.KIND}")
    return json.loads(out.stdout)["items"]


def rbac_denials(log: str) -> list[str]:
    """Log lines where the API server's RBAC authorizer refused the operator something.

    (Other 403s are not RBAC: writing into a namespace being deleted, say.)"""
    return [line for line in log.splitlines() if "forbidden: user" in line.lower()]


@pytest.fixture(scope="module")
def operator(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[OperatorProcess]:
    plane = control_plane
    plane.helm("install", RELEASE, str(CHART), "--namespace", RELEASE_NS, "--create-namespace",
               "--wait", "--timeout=120s", timeout=180)
    kubeconfig = plane.token_kubeconfig(SERVICE_ACCOUNT, RELEASE_NS)
    # The credential really is the ServiceAccount, held to the chart's RBAC.
    denied = plane.kubectl("auth", "can-i", "delete", "deployments", "-A",
                           kubeconfig=kubeconfig, check=False)
    assert denied.stdout.strip() == "no"
    process = OperatorProcess(kubeconfig, tmp_path_factory.mktemp("operator") / "operator.log")
    process.start()
    try:
        yield process
    finally:
        process.stop()
        plane.helm("uninstall", RELEASE, "--namespace", RELEASE_NS, check=False)


def apply_example(plane: ControlPlane, namespace: str) -> None:
    plane.kubectl("apply", "-n", namespace, "-f", str(EXAMPLE))


def wait_ready(plane: ControlPlane, namespace: str, operator: OperatorProcess,
               name: str = "demo", timeout: float = 90.0) -> dict[str, Any]:
    return wait_until(
        f"{namespace}/{name} Ready",
        lambda: (lambda obj: obj if condition(obj, "Ready").get("status") == "True" else None)(
            get(plane, namespace, crd.PLURAL, name)),
        timeout, operator)


def test_example_cluster_becomes_ready(control_plane: ControlPlane, namespace: str,
                                       operator: OperatorProcess) -> None:
    plane = control_plane
    apply_example(plane, namespace)
    cluster = wait_ready(plane, namespace, operator)

    for kind, name in CHILDREN:
        child = get(plane, namespace, kind, name)
        assert child is not None, f"{kind}/{name} missing"
        owner = child["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["uid"]) == (
            crd.KIND, "demo", cluster["metadata"]["uid"])

    worker = get(plane, namespace, "deployment", "demo-worker")
    pod = worker["spec"]["template"]["spec"]
    assert worker["spec"]["replicas"] == 1
    probes = pod["containers"][0]
    assert probes["startupProbe"]["httpGet"]["path"] == "/startupz"
    assert probes["livenessProbe"]["httpGet"]["path"] == "/livez"
    # A load that hangs past startupSeconds fails the startup probe: the kubelet restarts it.
    startup = probes["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] == \
        cluster["spec"]["workers"]["startupSeconds"]
    assert pod["initContainers"][0]["args"][0] == "make-tiny-model"
    args = pod["containers"][0]["args"]
    assert args[:2] == ["worker", "--model"] and "--worker-id" in args
    assert "nvidia.com/gpu" not in json.dumps(pod["containers"][0]["resources"])
    gateway = get(plane, namespace, "deployment", "demo-gateway")
    gateway_args = gateway["spec"]["template"]["spec"]["containers"][0]["args"]
    assert gateway_args[gateway_args.index("--discover") + 1] == f"{namespace}/demo-workers"
    assert "--api-keys-file" in gateway_args and "--system-keys-file" in gateway_args
    assert get(plane, namespace, "secret", "demo-system-key") is not None
    assert get(plane, namespace, "service", "demo-workers")["spec"]["clusterIP"] == "None"

    status = cluster["status"]
    assert status["observedGeneration"] == cluster["metadata"]["generation"]
    assert status["workers"]["readyReplicas"] == 1
    assert status["gateway"]["endpoint"] == f"http://demo-gateway.{namespace}.svc:8000"
    assert condition(cluster, "Degraded")["status"] == "False"
    # Autoscaling is on as shipped; from outside the cluster the gateway's Service name does
    # not resolve, and the autoscaler says so (tests/k8s/test_autoscaler.py runs the gateway).
    scaling = wait_until("the autoscaler's ScalingActive", lambda: condition(
        get(plane, namespace, crd.PLURAL, "demo"), "ScalingActive"), 30, operator)
    assert (scaling["status"], scaling["reason"]) == ("False", "SignalsUnavailable")
    pods = json.loads(plane.kubectl("get", "pods", "-n", namespace, "-o", "json").stdout)["items"]
    assert len(pods) == 2 and all(
        any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"]["conditions"])
        for p in pods)
    table = plane.kubectl("get", "otts", "demo", "-n", namespace).stdout
    assert table.split()[:6] == ["NAME", "READY", "WORKERS", "ENDPOINT", "TTFA", "P95"]
    assert "1/1" in table and "True" in table
    assert any(e["reason"] == "Ready" for e in events(plane, namespace, "demo"))
    assert not rbac_denials(operator.log()), operator.log_tail()


def _pod_names(plane: ControlPlane, namespace: str, match_labels: dict[str, str]) -> set[str]:
    selector = ",".join(f"{k}={v}" for k, v in match_labels.items())
    out = plane.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json").stdout
    return {p["metadata"]["name"] for p in json.loads(out)["items"]}


def test_generated_pods_pass_the_restricted_pod_security_standard(
        control_plane: ControlPlane, namespace: str, operator: OperatorProcess) -> None:
    plane = control_plane
    plane.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted",
                  "pod-security.kubernetes.io/enforce-version=latest")
    refused = plane.kubectl("run", "as-root", "-n", namespace, "--image=busybox",
                            "--restart=Never", check=False)  # the label is enforced here
    assert refused.returncode != 0 and "violates PodSecurity" in refused.stderr, refused
    apply_example(plane, namespace)
    wait_ready(plane, namespace, operator)  # Ready: the API server admitted every pod

    workers = _pod_names(plane, namespace, {"app.kubernetes.io/instance": "demo",
                                            "app.kubernetes.io/component": "worker"})
    gateways = _pod_names(plane, namespace, {"app.kubernetes.io/instance": "demo",
                                             "app.kubernetes.io/component": "gateway"})
    replicas = get(plane, namespace, crd.PLURAL, "demo")["spec"]["workers"]["replicas"]
    assert len(workers) == replicas >= 1 and len(gateways) == 1
    # The NetworkPolicy selects exactly the worker pods, and lets exactly the gateway pods in.
    policy = get(plane, namespace, "networkpolicy", "demo-worker")["spec"]
    assert _pod_names(plane, namespace, policy["podSelector"]["matchLabels"]) == workers
    (rule,) = policy["ingress"]
    (peer,) = rule["from"]
    assert set(peer) == {"podSelector"}
    assert _pod_names(plane, namespace, peer["podSelector"]["matchLabels"]) == gateways
    assert rule["ports"] == [{"port": 8100, "protocol": "TCP"}]
    # The internal token: made by the operator, owned by the cluster, read by both pods.
    token = get(plane, namespace, "secret", "demo-internal-token")
    assert token["metadata"]["ownerReferences"][0]["name"] == "demo"
    for dep in ("demo-worker", "demo-gateway"):
        env = get(plane, namespace, "deployment", dep)["spec"]["template"]["spec"][
            "containers"][0]["env"]
        assert any(e["name"] == "ORPHEUS_INTERNAL_TOKEN" and e["valueFrom"]["secretKeyRef"][
            "name"] == "demo-internal-token" for e in env), dep
    assert not rbac_denials(operator.log()), operator.log_tail()


def test_kubectl_scale_drives_the_worker_deployment(control_plane: ControlPlane, namespace: str,
                                                    operator: OperatorProcess) -> None:
    """With autoscaling off, the scale subresource is the user's (or KEDA's, or an HPA's)."""
    plane = control_plane
    apply_example(plane, namespace)
    plane.kubectl("patch", f"{crd.PLURAL}/demo", "-n", namespace, "--type=merge",
                  "-p", json.dumps({"spec": {"autoscaling": {"enabled": False}}}))
    wait_until("ScalingActive AutoscalingDisabled", lambda: condition(
        get(plane, namespace, crd.PLURAL, "demo"), "ScalingActive").get("reason") ==
        "AutoscalingDisabled", 30, operator)
    wait_ready(plane, namespace, operator)
    plane.kubectl("scale", "orpheuscluster/demo", "--replicas=3", "-n", namespace)
    wait_until("worker Deployment at 3 replicas",
               lambda: get(plane, namespace, "deployment", "demo-worker")["spec"]["replicas"] == 3,
               30, operator)
    cluster = wait_until(
        "status.workers at 3 ready",
        lambda: (lambda o: o if o["status"]["workers"]["readyReplicas"] == 3 else None)(
            get(plane, namespace, crd.PLURAL, "demo")), 60, operator)
    assert cluster["status"]["workers"]["replicas"] == 3
    scale = json.loads(plane.kubectl("get", "--raw",
                                     f"/apis/{crd.API_VERSION}/namespaces/{namespace}/"
                                     f"{crd.PLURAL}/demo/scale").stdout)
    assert scale["spec"]["replicas"] == 3 and scale["status"]["replicas"] == 3
    assert "app.kubernetes.io/component=worker" in scale["status"]["selector"]
    wait_until("a ScaledWorkers event",
               lambda: any(e["reason"] == "ScaledWorkers" and "1 -> 3" in e["message"]
                           for e in events(plane, namespace, "demo")), 20, operator)
    # Nobody else writes the count: it stays where the user put it, and zero is honoured.
    assert get(plane, namespace, crd.PLURAL, "demo")["spec"]["workers"]["replicas"] == 3
    plane.kubectl("scale", "orpheuscluster/demo", "--replicas=0", "-n", namespace)
    zero = wait_until("scaled to zero", lambda: (lambda o: o if condition(o, "Ready").get(
        "reason") == "ScaledToZero" else None)(get(plane, namespace, crd.PLURAL, "demo")),
        60, operator)
    assert zero["status"]["workers"]["replicas"] == 0
    assert get(plane, namespace, "deployment", "demo-worker")["spec"]["replicas"] == 0


def test_deleting_the_cluster_collects_every_child(control_plane: ControlPlane, namespace: str,
                                                   operator: OperatorProcess) -> None:
    plane = control_plane
    apply_example(plane, namespace)
    wait_ready(plane, namespace, operator)
    plane.kubectl("delete", "orpheuscluster", "demo", "-n", namespace, "--wait=true",
                  timeout=90)
    wait_until("every child garbage-collected",
               lambda: all(get(plane, namespace, kind, name) is None for kind, name in CHILDREN),
               90, operator)
    wait_until("ReplicaSets gone", lambda: json.loads(plane.kubectl(
        "get", "replicasets", "-n", namespace, "-o", "json").stdout)["items"] == [], 60, operator)
    # Pods go through their graceful termination (preStop + drain) on the fake kubelet.
    wait_until("every pod gone or terminating", lambda: all(
        p["metadata"].get("deletionTimestamp") for p in json.loads(plane.kubectl(
            "get", "pods", "-n", namespace, "-o", "json").stdout)["items"]), 60, operator)


def _versions(plane: ControlPlane, namespace: str) -> dict[str, str]:
    objects = {f"{kind}/{name}": get(plane, namespace, kind, name) for kind, name in CHILDREN}
    objects["cluster"] = get(plane, namespace, crd.PLURAL, "demo")
    return {key: obj["metadata"]["resourceVersion"] for key, obj in objects.items()}


def _pods(plane: ControlPlane, namespace: str) -> dict[str, str]:
    items = json.loads(plane.kubectl("get", "pods", "-n", namespace, "-o", "json").stdout)["items"]
    return {f"pod/{p['metadata']['name']}": p["metadata"]["resourceVersion"] for p in items}


def settled_versions(plane: ControlPlane, namespace: str, operator: OperatorProcess,
                     timeout: float = 60.0) -> dict[str, str]:
    """resourceVersions of the cluster, its children and its pods once a few resync passes in a
    row changed nothing."""
    deadline = time.monotonic() + timeout
    previous = {**_versions(plane, namespace), **_pods(plane, namespace)}
    while time.monotonic() < deadline:
        time.sleep(2.5 * operator.resync_seconds)
        current = {**_versions(plane, namespace), **_pods(plane, namespace)}
        if current == previous:
            return current
        previous = current
    raise AssertionError(f"cluster never settled:\n{operator.log_tail()}")


def restart_and_compare(plane: ControlPlane, namespace: str, operator: OperatorProcess
                        ) -> dict[str, tuple[str, str | None]] | None:
    """Restart the operator on a settled cluster and return what changed; None when a pod
    changed meanwhile (kwok's fake nodes can lag on a loaded machine): then the world moved and
    a status write would be the operator's duty, not its fault."""
    settled = settled_versions(plane, namespace, operator)
    passes = operator.log().count("Handler 'reconcile' succeeded")
    operator.restart()
    wait_until("the restarted operator's resume pass",
               lambda: operator.log().count("Handler 'reconcile' succeeded") > passes, 30,
               operator)
    time.sleep(3 * operator.resync_seconds)  # and a few resync passes
    after = {**_versions(plane, namespace), **_pods(plane, namespace)}
    pods = {k for k in {**settled, **after} if k.startswith("pod/")}
    if any(after.get(p) != settled.get(p) for p in pods):
        return None
    return {key: (old, after.get(key)) for key, old in settled.items() if after.get(key) != old}


def test_restart_writes_nothing_and_drift_is_put_back(control_plane: ControlPlane, namespace: str,
                                                      operator: OperatorProcess) -> None:
    plane = control_plane
    apply_example(plane, namespace)
    wait_ready(plane, namespace, operator)
    # Autoscaling is on as shipped: wait for the autoscaler's steady answer (the gateway's name
    # does not resolve here), which a tick before the system key existed could not give yet.
    wait_until("the autoscaler's steady condition", lambda: "demo-gateway" in condition(
        get(plane, namespace, crd.PLURAL, "demo"), "ScalingActive").get("message", ""),
        60, operator)
    for _attempt in range(3):
        changed = restart_and_compare(plane, namespace, operator)
        if changed is not None:
            break
    else:
        pytest.fail("pods kept changing on their own: the restart could not be measured")
    assert changed == {}, f"writes after a restart (old, new resourceVersion): {changed}"

    # Drift: someone scales the worker Deployment and edits its pod template; both come back.
    rendered = get(plane, namespace, "deployment", "demo-worker")
    image = rendered["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image != "tampered:1"
    plane.kubectl("scale", "deployment/demo-worker", "--replicas=5", "-n", namespace)
    plane.kubectl("patch", "deployment/demo-worker", "-n", namespace, "--type=json", "-p",
                  json.dumps([{"op": "replace",
                               "path": "/spec/template/spec/containers/0/image",
                               "value": "tampered:1"}]))

    def restored() -> bool:
        worker = get(plane, namespace, "deployment", "demo-worker")
        return (worker["spec"]["replicas"] == 1 and  # spec.workers.replicas, as shipped
                worker["spec"]["template"]["spec"]["containers"][0]["image"] == image)

    wait_until("drift put back", restored, 30, operator)


def test_invalid_spec_is_rejected_with_the_cel_message(control_plane: ControlPlane,
                                                       namespace: str) -> None:
    cluster = yaml.safe_load_all(EXAMPLE.read_text())
    body = next(d for d in cluster if d["kind"] == crd.KIND)
    body["spec"]["workers"].update(minReplicas=5, maxReplicas=2)
    result = control_plane.kubectl("apply", "-n", namespace, "-f", "-",
                                   input=json.dumps(body), check=False)
    assert result.returncode != 0
    assert "workers.minReplicas must not exceed workers.maxReplicas" in result.stderr

    no_model = {**body, "spec": {"model": {"revision": "main"},
                                 "gateway": {"auth": {"enabled": False}}}}
    result = control_plane.kubectl("apply", "-n", namespace, "-f", "-",
                                   input=json.dumps(no_model), check=False)
    assert result.returncode != 0
    assert "model.name is required unless model.standIn is true" in result.stderr
    assert get(control_plane, namespace, crd.PLURAL, "demo") is None


def test_missing_secret_is_degraded_until_it_appears(control_plane: ControlPlane, namespace: str,
                                                     operator: OperatorProcess) -> None:
    plane = control_plane
    docs = list(yaml.safe_load_all(EXAMPLE.read_text()))
    secret = next(d for d in docs if d["kind"] == "Secret")
    cluster = next(d for d in docs if d["kind"] == crd.KIND)
    plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(cluster))

    degraded = wait_until(
        "Degraded", lambda: (lambda o: o if condition(o, "Degraded").get("status") == "True"
                             else None)(get(plane, namespace, crd.PLURAL, "demo")), 60, operator)
    cond = condition(degraded, "Degraded")
    assert cond["reason"] == "AuthSecretMissing"
    assert f"Secret {namespace}/demo-api-keys" in cond["message"]
    assert condition(degraded, "Ready")["status"] == "False"
    wait_until("a Warning event naming the Secret",
               lambda: any(e["type"] == "Warning" and e["reason"] == "AuthSecretMissing"
                           for e in events(plane, namespace, "demo")), 20, operator)
    assert operator.alive()

    plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(secret))
    recovered = wait_ready(plane, namespace, operator)
    assert condition(recovered, "Degraded")["status"] == "False"


def test_autoscaling_cluster_runs_under_the_chart_rbac(control_plane: ControlPlane,
                                                       namespace: str,
                                                       operator: OperatorProcess) -> None:
    """With autoscaling on, the autoscaler inside the operator works under the chart's RBAC too
    (it cannot reach the gateway from outside the cluster: it says so in ScalingActive)."""
    plane = control_plane
    docs = list(yaml.safe_load_all(EXAMPLE.read_text()))
    cluster = next(d for d in docs if d["kind"] == crd.KIND)
    cluster["spec"]["autoscaling"] = {"enabled": True, "intervalSeconds": 1}
    secret = next(d for d in docs if d["kind"] == "Secret")
    plane.kubectl("apply", "-n", namespace, "-f", "-",
                  input=json.dumps({"apiVersion": "v1", "kind": "List",
                                    "items": [secret, cluster]}))
    # It gets as far as the gateway: the system key is created and read under the chart's RBAC
    # (the very first tick may run before the first reconcile created the Secret).
    owned = wait_until("the autoscaler reading the system key", lambda: (lambda c: c if c.get(
        "reason") == "SignalsUnavailable" and "Secret" not in c["message"] else None)(condition(
        get(plane, namespace, crd.PLURAL, "demo"), "ScalingActive")), 60, operator)
    assert "demo-gateway" in owned["message"], owned["message"]
    wait_ready(plane, namespace, operator)
    assert get(plane, namespace, "deployment", "demo-worker")["spec"]["replicas"] == 1
    assert not rbac_denials(operator.log()), operator.log_tail()


def test_the_old_ttfa_spelling_warns_and_still_works(control_plane: ControlPlane,
                                                      namespace: str,
                                                      operator: OperatorProcess) -> None:
    """kubectl prints the chart's ValidatingAdmissionPolicy warning; the operator reads the
    value and says so in the Deprecated condition."""
    plane = control_plane
    docs = list(yaml.safe_load_all(EXAMPLE.read_text()))
    secret = next(d for d in docs if d["kind"] == "Secret")
    cluster = next(d for d in docs if d["kind"] == crd.KIND)
    cluster["spec"]["autoscaling"]["targetTTFBp95Ms"] = 700
    applied = plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": [secret, cluster]}))
    assert "targetTTFBp95Ms is deprecated: rename it to targetTTFAp95Ms (value 700)" in \
        applied.stderr, applied.stderr
    deprecated = wait_until("the Deprecated condition", lambda: condition(
        get(plane, namespace, crd.PLURAL, "demo"), "Deprecated").get("status") == "True" and
        condition(get(plane, namespace, crd.PLURAL, "demo"), "Deprecated"), 60, operator)
    assert "targetTTFBp95Ms (use targetTTFAp95Ms)" in deprecated["message"]
    both = {**cluster["spec"]["autoscaling"], "targetTTFAp95Ms": 700}
    refused = plane.kubectl("patch", f"{crd.PLURAL}/demo", "-n", namespace, "--type=merge",
                            "-p", json.dumps({"spec": {"autoscaling": both}}), check=False)
    assert refused.returncode != 0 and "set autoscaling.targetTTFAp95Ms only" in refused.stderr
