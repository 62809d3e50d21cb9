"""The control-plane fixture itself: controllers, scheduler, kwok nodes and RBAC really work."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.k8s import controlplane
from tests.k8s.controlplane import REQUIRED_BINARIES, ControlPlane, ControlPlaneError


def deployment(name: str, replicas: int, pod_spec_extra: dict[str, Any] | None = None) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [{"name": "main", "image": "registry.invalid/none:1", "ports": [{"containerPort": 8080}]}],
                    **(pod_spec_extra or {}),
                },
            },
        },
    }


def get_json(plane: ControlPlane, *args: str) -> Any:
    return json.loads(plane.kubectl("get", *args, "-o", "json").stdout)


def wait_until(what: str, predicate: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def test_deployment_pods_become_ready_and_are_garbage_collected(control_plane: ControlPlane, namespace: str) -> None:
    plane = control_plane
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    plane.apply([deployment("web", 2), service], namespace=namespace)
    plane.kubectl("rollout", "status", "deployment/web", "-n", namespace, "--timeout=90s", timeout=100)

    pods = get_json(plane, "pods", "-n", namespace, "-l", "app=web")["items"]
    assert len(pods) == 2
    kwok_nodes = {n["metadata"]["name"] for n in get_json(plane, "nodes", "-l", "type=kwok")["items"]}
    for pod in pods:
        assert pod["spec"]["nodeName"] in kwok_nodes
        assert pod["status"]["podIP"]
        ready = [c for c in pod["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True"
    # Untolerated GPU taint: nothing lands on the GPU node.
    assert all(pod["spec"]["nodeName"] != "kwok-gpu-0" for pod in pods)

    pod_ips = {pod["status"]["podIP"] for pod in pods}

    def ready_endpoint_ips() -> set[str]:
        slices = get_json(plane, "endpointslices", "-n", namespace, "-l", "kubernetes.io/service-name=web")["items"]
        return {
            address
            for s in slices
            for e in s.get("endpoints") or []
            if e.get("conditions", {}).get("ready")
            for address in e["addresses"]
        }

    wait_until("an EndpointSlice with both pods ready", lambda: ready_endpoint_ips() == pod_ips)

    replica_sets = get_json(plane, "replicasets", "-n", namespace, "-l", "app=web")["items"]
    assert len(replica_sets) == 1
    plane.kubectl("delete", "deployment", "web", "-n", namespace, "--wait=false")

    def children_gone() -> bool:
        remaining = get_json(plane, "replicasets,pods", "-n", namespace, "-l", "app=web")["items"]
        return not remaining

    wait_until("the garbage collector to remove the ReplicaSet and pods", children_gone, timeout=90)


def test_gpu_pods_are_scheduled_only_onto_the_gpu_node(control_plane: ControlPlane, namespace: str) -> None:
    plane = control_plane
    gpu_pod_spec = {
        "nodeSelector": {"cloud.google.com/gke-accelerator": "nvidia-l4"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    }
    gpu = deployment("gpu", 1, gpu_pod_spec)
    gpu["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": "1"}}
    # Five GPUs wanted, four on the node: one pod stays Pending as Unschedulable.
    greedy = deployment("greedy", 1, gpu_pod_spec)
    greedy["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": "5"}}
    plane.apply([gpu, greedy], namespace=namespace)
    plane.kubectl("rollout", "status", "deployment/gpu", "-n", namespace, "--timeout=90s", timeout=100)

    (pod,) = get_json(plane, "pods", "-n", namespace, "-l", "app=gpu")["items"]
    assert pod["spec"]["nodeName"] == "kwok-gpu-0"

    def greedy_unschedulable() -> bool:
        pods = get_json(plane, "pods", "-n", namespace, "-l", "app=greedy")["items"]
        return any(
            c["type"] == "PodScheduled" and c["status"] == "False" and c.get("reason") == "Unschedulable"
            for p in pods
            for c in p["status"].get("conditions", [])
        )

    wait_until("the scheduler to report the 5-GPU pod Unschedulable", greedy_unschedulable)


def test_service_account_token_is_subject_to_rbac(control_plane: ControlPlane, namespace: str) -> None:
    plane = control_plane
    plane.apply(
        [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader"}},
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "configmap-reader"},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "reader"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "configmap-reader"},
                "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
            },
        ],
        namespace=namespace,
    )
    plane.kubectl("create", "configmap", "settings", "-n", namespace, "--from-literal=a=1")
    kubeconfig = plane.token_kubeconfig("reader", namespace)

    whoami = json.loads(plane.kubectl("auth", "whoami", "-o", "json", kubeconfig=kubeconfig).stdout)
    assert whoami["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:reader"

    allowed = plane.kubectl("get", "configmap", "settings", "-n", namespace, "-o", "json", kubeconfig=kubeconfig)
    assert json.loads(allowed.stdout)["data"] == {"a": "1"}

    denied = plane.kubectl(
        "create", "configmap", "other", "-n", namespace, "--from-literal=b=2", kubeconfig=kubeconfig, check=False
    )
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()

    core = client.CoreV1Api(plane.api_client(kubeconfig))
    assert core.read_namespaced_config_map("settings", namespace).data == {"a": "1"}
    with pytest.raises(ApiException) as forbidden:
        core.delete_namespaced_config_map("settings", namespace)
    assert forbidden.value.status == 403
    with pytest.raises(ApiException) as other_namespace:
        core.list_namespaced_config_map("default")
    assert other_namespace.value.status == 403

    # The admin client is not restricted.
    admin = client.CoreV1Api(plane.api_client())
    admin.delete_namespaced_config_map("settings", namespace)


def test_kwok_holds_a_lease_for_every_fake_node(control_plane: ControlPlane) -> None:
    """Without renewed leases the node lifecycle controller taints the nodes unreachable after
    40 s and every pod turns NotReady, which rewrites Deployments and PDBs behind the tests' backs."""
    expected = {"kwok-cpu-0", "kwok-cpu-1", "kwok-gpu-0"}

    def leases() -> dict[str, Any]:
        items = get_json(control_plane, "leases", "-n", "kube-node-lease")["items"]
        return {lease["metadata"]["name"]: lease["spec"] for lease in items if lease["metadata"]["name"] in expected}

    held = wait_until("kwok to take the node leases", lambda: (found := leases()).keys() == expected and found)
    for spec in held.values():
        assert spec["holderIdentity"]
        assert spec["leaseDurationSeconds"] == 40
        assert spec["renewTime"]
    for node in get_json(control_plane, "nodes", "-l", "type=kwok")["items"]:
        taints = {t["key"] for t in node["spec"].get("taints") or []}
        assert "node.kubernetes.io/unreachable" not in taints


def test_a_component_that_dies_at_start_fails_with_its_log_and_leaves_nothing_running(
    k8s_bin_dir: Path, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in REQUIRED_BINARIES:
        (bin_dir / name).symlink_to(k8s_bin_dir / name)
    (bin_dir / "kube-apiserver").unlink()
    (bin_dir / "kube-apiserver").write_text("#!/bin/sh\necho 'cannot start: flag provided but not defined' >&2\nexit 3\n")
    (bin_dir / "kube-apiserver").chmod(0o755)

    started: list[subprocess.Popen[bytes]] = []
    work_dirs: set[Path] = set()
    real_start = controlplane._start

    def recording_start(name: str, argv: list[str], work_dir: Path) -> controlplane.Component:
        component = real_start(name, argv, work_dir)
        started.append(component.process)
        work_dirs.add(work_dir)
        return component

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(controlplane, "_start", recording_start)
        patch.delenv("ORPHEUS_K8S_KEEP", raising=False)
        with pytest.raises(ControlPlaneError) as failure:
            ControlPlane.start(bin_dir=bin_dir, timeout=60)

    message = str(failure.value)
    assert "kube-apiserver exited" in message
    assert "cannot start: flag provided but not defined" in message
    assert [p.args[0] for p in started] == [str(bin_dir / "etcd"), str(bin_dir / "kube-apiserver")]
    assert all(p.poll() is not None for p in started), "etcd must be stopped when the start fails"
    (work_dir,) = work_dirs
    assert not work_dir.exists(), "the temp dir is removed when the start fails"


def test_command_line_up_serves_until_interrupted(k8s_bin_dir: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.k8s.controlplane", "up"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
        env={k: v for k, v in os.environ.items() if k != "ORPHEUS_K8S_KEEP"},
    )
    try:
        kubeconfig = Path(process.stdout.readline().strip())  # type: ignore[union-attr]
        assert kubeconfig.is_file(), process.stderr.read() if process.poll() is not None else ""  # type: ignore[union-attr]
        nodes = subprocess.run(
            [str(k8s_bin_dir / "kubectl"), f"--kubeconfig={kubeconfig}", "get", "nodes", "-o", "name"],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout.split()
        assert sorted(nodes) == ["node/kwok-cpu-0", "node/kwok-cpu-1", "node/kwok-gpu-0"]
        children = psutil.Process(process.pid).children(recursive=True)
        assert {c.name() for c in children} >= {"etcd", "kube-apiserver", "kwok"}

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
        _, still_alive = psutil.wait_procs(children, timeout=10)
        assert not still_alive
        assert not kubeconfig.exists(), "the work dir is removed on exit"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_port_taken_between_picking_and_binding_is_retried_on_new_ports(k8s_bin_dir: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        handed_out: list[int] = []
        real_free_port = controlplane.free_port

        def first_one_taken() -> int:
            port = taken if not handed_out else real_free_port()
            handed_out.append(port)
            return port

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(controlplane, "free_port", first_one_taken)
            plane = ControlPlane.start(bin_dir=k8s_bin_dir)
        try:
            assert handed_out[0] == taken
            assert plane.server != f"https://127.0.0.1:{taken}"
            assert plane.kubectl("get", "--raw", "/readyz").stdout == "ok"
        finally:
            plane.stop()
