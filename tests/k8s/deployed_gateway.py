"""The real gateway process, run as the operator deployed it, next to the test control plane.

kwok plays the kubelet, so no container runs; `DeployedGateway.start(plane, namespace,
deployment)` runs what the gateway pod would: the container's own `args` and `env` from the
live Deployment (downward-API and Secret/ConfigMap references resolved as the kubelet would),
every mounted ConfigMap and Secret written out as the kubelet would project it (the API keys,
the system key, the voice aliases), and the pod's ServiceAccount as its only Kubernetes
credential (a token kubeconfig, so the gateway's RBAC holds as deployed). What changes is
the network identity only: `--host` becomes 127.0.0.1 and `--port` a free port, and mount paths
point into a temporary directory.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.k8s.controlplane import ControlPlane, free_port
from tests.support.child_proc import stop_group, wait_http_ok

ROOT = Path(__file__).resolve().parents[2]


def _object(plane: ControlPlane, namespace: str, kind: str, name: str) -> dict[str, Any]:
    return json.loads(plane.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout)


def _projected(plane: ControlPlane, namespace: str, volume: dict[str, Any]) -> dict[str, bytes]:
    """The files a configMap or secret volume holds (path -> bytes), as the kubelet writes them."""
    if "secret" in volume:
        source = volume["secret"]
        obj = _object(plane, namespace, "secret", source["secretName"])
        data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    elif "configMap" in volume:
        source = volume["configMap"]
        obj = _object(plane, namespace, "configmap", source["name"])
        data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
    elif "emptyDir" in volume:
        return {}  # a scratch directory (the read-only root's writable /tmp): starts empty
    else:
        raise AssertionError(f"the gateway mounts an unexpected volume: {volume}")
    items = source.get("items")
    if not items:
        return data
    return {item["path"]: data[item["key"]] for item in items}


def _env(plane: ControlPlane, namespace: str, pod_name: str,
         env: list[dict[str, Any]]) -> dict[str, str]:
    resolved: dict[str, str] = {}
    for var in env:
        if "value" in var:
            resolved[var["name"]] = var["value"]
            continue
        source = var.get("valueFrom") or {}
        if "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            resolved[var["name"]] = {"metadata.name": pod_name,
                                     "metadata.namespace": namespace}[path]
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            obj = _object(plane, namespace, "secret", ref["name"])
            resolved[var["name"]] = base64.b64decode(obj["data"][ref["key"]]).decode()
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            resolved[var["name"]] = _object(plane, namespace, "configmap",
                                            ref["name"])["data"][ref["key"]]
    return resolved


class DeployedGateway:
    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path, port: int):
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def from_deployment(cls, plane: ControlPlane, namespace: str, name: str,
                        workdir: Path) -> DeployedGateway:
        deployment = _object(plane, namespace, "deployment", name)
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["command"] == ["orpheus-tts"], container["command"]
        pod_name = f"{name}-test"

        volumes = {v["name"]: v for v in pod.get("volumes") or []}
        mounts: dict[str, Path] = {}
        for mount in container.get("volumeMounts") or []:
            target = workdir / "mounts" / mount["name"]
            target.mkdir(parents=True, exist_ok=True)
            for path, content in _projected(plane, namespace, volumes[mount["name"]]).items():
                (target / path).write_bytes(content)
            mounts[mount["mountPath"]] = target

        port = free_port()
        args = list(container["args"])
        args[args.index("--host") + 1] = "127.0.0.1"
        args[args.index("--port") + 1] = str(port)
        for i, arg in enumerate(args):
            for mount_path, target in mounts.items():
                if arg.startswith(mount_path + "/"):
                    args[i] = str(target) + arg[len(mount_path):]

        kubeconfig = plane.token_kubeconfig(pod["serviceAccountName"], namespace)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("ORPHEUS_")},
            **_env(plane, namespace, pod_name, container.get("env") or []),
            "KUBECONFIG": str(kubeconfig),
            "PYTHONUNBUFFERED": "1",
        }
        return cls([sys.executable, "-m", "orpheus_tts.cli", *args], env,
                   workdir / "gateway.log", port)

    def start(self, timeout: float = 60.0) -> DeployedGateway:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        wait_http_ok(self.url + "/readyz", self.process, self.log, "gateway", timeout)
        return self

    def stop(self) -> None:
        process, self.process = self.process, None
        stop_group(process)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> DeployedGateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
