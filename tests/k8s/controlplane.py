"""A real Kubernetes control plane on loopback, for tests and for poking at by hand.

etcd, kube-apiserver (RBAC on), kube-controller-manager, kube-scheduler and kwok run as child
processes from the binaries `tests/k8s/build.sh` caches (`make k8s-tools`). kwok plays the
kubelet for a few fake Nodes, so scheduled pods become Ready and get pod IPs; one Node looks like
a GKE GPU node (4 `nvidia.com/gpu`, the `cloud.google.com/gke-accelerator` label and GKE's
`nvidia.com/gpu=present:NoSchedule` taint).

    python -m tests.k8s.controlplane up     # prints the admin kubeconfig path; Ctrl-C stops it
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from orpheus_tts.up import die_with_parent

BUILD_SCRIPT = Path(__file__).with_name("build.sh")
REQUIRED_BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "kubectl",
    "helm",
    "kwok-stages.yaml",
)
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}


class ToolsMissing(RuntimeError):
    """The control-plane binaries have not been built on this machine."""


class ControlPlaneError(RuntimeError):
    """A component failed to start or the cluster never became usable."""


def find_bin_dir() -> Path:
    """The directory holding the built binaries; raises ToolsMissing when they are not built.

    `ORPHEUS_K8S_BIN_DIR` overrides the lookup (binaries built elsewhere)."""
    override = os.environ.get("ORPHEUS_K8S_BIN_DIR")
    if override:
        bin_dir = Path(override)
    else:
        if shutil.which("go") is None:
            raise ToolsMissing("Go is not installed: the control plane is built from Go modules (`make k8s-tools`)")
        result = subprocess.run(
            ["bash", str(BUILD_SCRIPT), "--bin-dir"], capture_output=True, text=True, timeout=60
        )
        if result.returncode != 0:
            raise ToolsMissing(f"`{BUILD_SCRIPT} --bin-dir` failed: {result.stderr.strip()}")
        bin_dir = Path(result.stdout.strip().splitlines()[-1])
    missing = [name for name in REQUIRED_BINARIES if not (bin_dir / name).is_file()]
    if missing:
        raise ToolsMissing(
            f"control-plane binaries {', '.join(missing)} are not built in {bin_dir}: run `make k8s-tools`"
        )
    return bin_dir


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- certificates -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """File paths of the cluster's CA, serving cert, admin client cert and service-account key."""

    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    service_account_key: Path
    service_account_pub: Path


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())  # P-256: milliseconds, where RSA takes a second


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def _certificate(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    is_ca: bool = False,
    server_names: Sequence[str] = (),
    server_ips: Sequence[str] = (),
    client: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    if is_ca:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        usages = [x509.ExtendedKeyUsageOID.CLIENT_AUTH] if client else [x509.ExtendedKeyUsageOID.SERVER_AUTH]
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )
    if server_names or server_ips:
        alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in server_names]
        alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in server_ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def write_pki(directory: Path) -> Pki:
    """A throwaway CA plus the certificates and keys the control plane needs, written to `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    ca_key = _new_key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "orpheus-tts-test-ca")])
    ca_cert = _certificate(ca_name, ca_key, ca_name, ca_key, is_ca=True)

    serving_key = _new_key()
    service_ip = str(next(ipaddress.ip_network(SERVICE_CLUSTER_IP_RANGE).hosts()))
    serving_cert = _certificate(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
        serving_key,
        ca_name,
        ca_key,
        server_names=["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                      "kubernetes.default.svc.cluster.local"],
        server_ips=["127.0.0.1", service_ip],
    )
    admin_key = _new_key()
    admin_cert = _certificate(
        x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
            x509.NameAttribute(NameOID.COMMON_NAME, "orpheus-tts-test-admin"),
        ]),
        admin_key,
        ca_name,
        ca_key,
        client=True,
    )
    service_account_key = _new_key()

    pki = Pki(
        ca_cert=directory / "ca.crt",
        ca_key=directory / "ca.key",
        serving_cert=directory / "apiserver.crt",
        serving_key=directory / "apiserver.key",
        admin_cert=directory / "admin.crt",
        admin_key=directory / "admin.key",
        service_account_key=directory / "sa.key",
        service_account_pub=directory / "sa.pub",
    )
    pki.ca_cert.write_bytes(ca_cert.public_bytes(pem))
    _write_key(pki.ca_key, ca_key)
    pki.serving_cert.write_bytes(serving_cert.public_bytes(pem))
    _write_key(pki.serving_key, serving_key)
    pki.admin_cert.write_bytes(admin_cert.public_bytes(pem))
    _write_key(pki.admin_key, admin_key)
    _write_key(pki.service_account_key, service_account_key)
    pki.service_account_pub.write_bytes(
        service_account_key.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return pki


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(path: Path, server: str, ca_cert: Path, user: dict[str, str], name: str = "orpheus-test") -> Path:
    """A single-context kubeconfig (JSON is valid YAML) for `server` with the given user entry."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority-data": _b64(ca_cert)}}],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name, "namespace": "default"}}],
        "current-context": name,
    }
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)
    return path


# --- processes --------------------------------------------------------------------------------


@dataclass
class Component:
    """One control-plane process and its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _start(name: str, argv: Sequence[str], log_dir: Path) -> Component:
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent if sys.platform == "linux" else None,
        )
    return Component(name, process, log_path)


def _stop(components: Sequence[Component], grace: float = 10.0) -> None:
    """Stops each process group in the given order: SIGTERM, then SIGKILL after `grace` seconds.

    One at a time, because the API server shuts down cleanly only while etcd is still there."""
    for component in components:
        if not component.alive():
            continue
        with contextlib.suppress(ProcessLookupError):
            os.killpg(component.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            component.process.wait(timeout=grace)
        if component.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(component.process.pid, signal.SIGKILL)
            component.process.wait(timeout=5)


# --- the control plane ------------------------------------------------------------------------


def fake_nodes() -> list[dict[str, Any]]:
    """Two CPU nodes and one GKE-like GPU node, all managed by kwok."""

    def node(name: str, labels: dict[str, str], allocatable: dict[str, str], taints: list[dict[str, str]]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "node.kubernetes.io/instance-type": labels.pop("instance-type"),
                    "topology.kubernetes.io/zone": "us-central1-a",
                    "type": "kwok",
                    **labels,
                },
            },
            "spec": {"taints": taints},
            "status": {"allocatable": allocatable, "capacity": allocatable},
        }

    cpu = {"cpu": "16", "memory": "64Gi", "pods": "110", "ephemeral-storage": "100Gi"}
    return [
        node("kwok-cpu-0", {"instance-type": "e2-standard-16"}, dict(cpu), []),
        node("kwok-cpu-1", {"instance-type": "e2-standard-16"}, dict(cpu), []),
        node(
            "kwok-gpu-0",
            {
                "instance-type": "g2-standard-48",
                "cloud.google.com/gke-accelerator": "nvidia-l4",
                "cloud.google.com/gke-nodepool": "gpu-pool",
                "cloud.google.com/gke-gpu": "true",
            },
            {"cpu": "48", "memory": "192Gi", "pods": "110", "ephemeral-storage": "100Gi", "nvidia.com/gpu": "4"},
            [dict(GPU_TAINT)],
        ),
    ]


@dataclass
class ControlPlane:
    """A running control plane. Start with `ControlPlane.start()`; always `stop()` it (or use `running()`)."""

    bin_dir: Path
    work_dir: Path
    kubeconfig: Path
    server: str
    pki: Pki
    components: list[Component] = field(default_factory=list)
    keep_work_dir: bool = False

    @classmethod
    def start(
        cls, bin_dir: Path | None = None, work_dir: Path | None = None, timeout: float = 180.0, attempts: int = 3
    ) -> ControlPlane:
        """Starts every component and waits until the cluster is usable (per attempt: `timeout` s).

        Ports are picked free before the components bind them, so another process can take one
        in between: a start that fails with "address already in use" is retried on new ports."""
        bin_dir = bin_dir or find_bin_dir()
        for attempt in range(1, attempts + 1):
            try:
                return cls._start_once(bin_dir, work_dir, timeout)
            except ControlPlaneError as exc:
                if "address already in use" not in str(exc) or attempt == attempts:
                    raise
        raise AssertionError("unreachable")

    @classmethod
    def _start_once(cls, bin_dir: Path, work_dir: Path | None, timeout: float) -> ControlPlane:
        keep = work_dir is not None or bool(os.environ.get("ORPHEUS_K8S_KEEP"))
        work_dir = work_dir or Path(tempfile.mkdtemp(prefix="orpheus-k8s-"))
        work_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(work_dir / "etcd", ignore_errors=True)
        pki = write_pki(work_dir / "pki")
        port = free_port()
        server = f"https://127.0.0.1:{port}"
        kubeconfig = write_kubeconfig(
            work_dir / "admin.kubeconfig",
            server,
            pki.ca_cert,
            {"client-certificate-data": _b64(pki.admin_cert), "client-key-data": _b64(pki.admin_key)},
        )
        plane = cls(bin_dir, work_dir, kubeconfig, server, pki, keep_work_dir=keep)
        try:
            plane._boot(port, time.monotonic() + timeout)
        except BaseException:
            plane.stop()
            raise
        return plane

    # -- startup --

    def _fail(self, what: str) -> ControlPlaneError:
        tails = "\n".join(
            f"--- {c.name} ({'running' if c.alive() else f'exited {c.process.returncode}'}), {c.log_path}:\n{c.log_tail()}"
            for c in self.components
        )
        hint = "" if self.keep_work_dir else " (ORPHEUS_K8S_KEEP=1 keeps the logs and certs)"
        return ControlPlaneError(f"control plane: {what}{hint}\n{tails}")

    def _wait(self, what: str, ready: Callable[[], bool], deadline: float, interval: float = 0.2) -> None:
        while True:
            dead = [c for c in self.components if not c.alive()]
            if dead:
                raise self._fail(f"{dead[0].name} exited while waiting for {what}")
            with contextlib.suppress(httpx.HTTPError):
                if ready():
                    return
            if time.monotonic() > deadline:
                raise self._fail(f"timed out waiting for {what}")
            time.sleep(interval)

    def _run(self, name: str, *args: str) -> Component:
        component = _start(name, [str(self.bin_dir / name), *args], self.work_dir)
        self.components.append(component)
        return component

    def _start_control_plane(self, apiserver_port: int, deadline: float, *, address: str,
                             serving: tuple[Path, Path], apiserver_flags: Sequence[str] = ()) -> None:
        """etcd, kube-apiserver (serving on `address`), kube-controller-manager and kube-scheduler:
        the part of the cluster that this plane and the real node (tests/k8s/realnode.py) share."""
        etcd_client, etcd_peer = free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_client}"
        self._run(
            "etcd",
            "--name=orpheus-test",
            f"--data-dir={self.work_dir / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-cluster=orpheus-test=http://127.0.0.1:{etcd_peer}",
            "--unsafe-no-fsync",
            "--log-level=warn",
        )
        self._wait("etcd /health", lambda: _http_ok(f"{etcd_url}/health"), deadline)

        p = self.pki
        self._run(
            "kube-apiserver",
            f"--etcd-servers={etcd_url}",
            f"--bind-address={address}",
            f"--advertise-address={address}",
            f"--secure-port={apiserver_port}",
            f"--tls-cert-file={serving[0]}",
            f"--tls-private-key-file={serving[1]}",
            f"--client-ca-file={p.ca_cert}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={p.service_account_pub}",
            f"--service-account-signing-key-file={p.service_account_key}",
            "--authorization-mode=Node,RBAC",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--allow-privileged=true",
            *apiserver_flags,
            "--enable-priority-and-fairness=false",
            "--profiling=false",
            "--v=1",
        )
        self._wait("kube-apiserver /readyz", self._apiserver_ready, deadline)

        common = [f"--kubeconfig={self.kubeconfig}", "--leader-elect=false", "--v=1"]
        self._run(
            "kube-controller-manager",
            *common,
            "--controllers=*",
            f"--service-account-private-key-file={p.service_account_key}",
            f"--root-ca-file={p.ca_cert}",
            f"--cluster-signing-cert-file={p.ca_cert}",
            f"--cluster-signing-key-file={p.ca_key}",
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}",
            "--profiling=false",
        )
        self._run(
            "kube-scheduler",
            *common,
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}",
            "--profiling=false",
        )

    def _boot(self, apiserver_port: int, deadline: float) -> None:
        self._start_control_plane(
            apiserver_port, deadline, address="127.0.0.1", serving=(self.pki.serving_cert, self.pki.serving_key),
            # Loopback addresses are invalid in Endpoints, so the `kubernetes` Service stays empty.
            apiserver_flags=("--endpoint-reconciler-type=none",))
        self._run(
            "kwok",
            f"--config={self.bin_dir / 'kwok-stages.yaml'}",
            f"--kubeconfig={self.kubeconfig}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
            f"--cidr={POD_CIDR}",
            # Without leases renewed, the node lifecycle controller marks nodes unreachable after 40 s.
            "--node-lease-duration-seconds=40",
            "--node-ip=10.240.0.1",
            f"--server-address=127.0.0.1:{free_port()}",
        )
        with self._admin_http() as http:
            for node in fake_nodes():
                response = http.post("/api/v1/nodes", json=node)
                if response.status_code != 201:
                    raise self._fail(f"creating node {node['metadata']['name']}: {response.status_code} {response.text}")
            self._wait("kwok to mark the fake nodes Ready", lambda: self._nodes_ready(http), deadline)
            self._wait(
                "the default ServiceAccount",
                lambda: http.get("/api/v1/namespaces/default/serviceaccounts/default").status_code == 200,
                deadline,
            )

    def _admin_http(self) -> httpx.Client:
        """An httpx client for the API server, authenticated as the admin."""
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        context.load_cert_chain(str(self.pki.admin_cert), str(self.pki.admin_key))
        return httpx.Client(base_url=self.server, verify=context, timeout=10.0)

    def _apiserver_ready(self) -> bool:
        return _http_ok(f"{self.server}/readyz", self.pki.ca_cert)

    @staticmethod
    def _nodes_ready(http: httpx.Client) -> bool:
        response = http.get("/api/v1/nodes", params={"labelSelector": "type=kwok"})
        if response.status_code != 200:
            return False
        nodes = response.json()["items"]
        expected = {n["metadata"]["name"] for n in fake_nodes()}
        ready = {
            n["metadata"]["name"]
            for n in nodes
            if any(c["type"] == "Ready" and c["status"] == "True" for c in n.get("status", {}).get("conditions", []))
        }
        return expected <= ready

    # -- use --

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 60.0,
        kubeconfig: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Runs the built kubectl against this cluster (admin unless `kubeconfig` is given)."""
        argv = [
            str(self.bin_dir / "kubectl"),
            f"--kubeconfig={kubeconfig or self.kubeconfig}",
            f"--cache-dir={self.work_dir / 'kube-cache'}",
            *args,
        ]
        result = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(result.returncode, argv, result.stdout, result.stderr)
        return result

    def helm(self, *args: str, check: bool = True, timeout: float = 120.0, kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Runs the built helm CLI against this cluster, with its caches inside the work dir."""
        helm_home = self.work_dir / "helm"
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig or self.kubeconfig),
            "HELM_CACHE_HOME": str(helm_home / "cache"),
            "HELM_CONFIG_HOME": str(helm_home / "config"),
            "HELM_DATA_HOME": str(helm_home / "data"),
        }
        argv = [str(self.bin_dir / "helm"), *args]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
        if check and result.returncode != 0:
            error = subprocess.CalledProcessError(result.returncode, argv, result.stdout, result.stderr)
            error.add_note(f"helm said: {result.stderr.strip()[-2000:]}")
            raise error
        return result

    def apply(self, objects: str | dict[str, Any] | Sequence[dict[str, Any]], namespace: str | None = None) -> str:
        """`kubectl apply` YAML text or objects (server-side apply); returns kubectl's output."""
        if isinstance(objects, str):
            text = objects
        else:
            items = [objects] if isinstance(objects, dict) else list(objects)
            text = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
        args = ["apply", "--server-side", "--force-conflicts", "-f", "-"]
        if namespace:
            args += ["-n", namespace]
        return self.kubectl(*args, input=text).stdout

    def api_client(self, kubeconfig: Path | None = None) -> Any:
        """A `kubernetes.client.ApiClient` for this cluster (admin unless `kubeconfig` is given)."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(kubeconfig or self.kubeconfig))

    def token_kubeconfig(self, service_account: str, namespace: str, duration: str = "2h") -> Path:
        """A kubeconfig that authenticates as ServiceAccount `namespace/service_account` with a
        bound token from `kubectl create token`, so requests go through the RBAC authorizer."""
        token = self.kubectl(
            "create", "token", service_account, "-n", namespace, f"--duration={duration}"
        ).stdout.strip()
        path = self.work_dir / "kubeconfigs" / f"{namespace}.{service_account}.kubeconfig"
        path.parent.mkdir(exist_ok=True)
        return write_kubeconfig(path, self.server, self.pki.ca_cert, {"token": token}, name=f"{namespace}-{service_account}")

    def logs(self, lines: int = 25) -> str:
        """The tail of every component's log, for failure messages."""
        return "\n".join(f"--- {c.name}:\n{c.log_tail(lines)}" for c in self.components)

    def stop(self) -> None:
        """Stops every process (idempotent) and removes the work dir unless asked to keep it."""
        _stop(list(reversed(self.components)))
        if not self.keep_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)


def _http_ok(url: str, ca_file: Path | None = None) -> bool:
    verify = ssl.create_default_context(cafile=str(ca_file)) if ca_file else False
    try:
        return httpx.get(url, verify=verify, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def running(**kwargs: Any) -> Iterator[ControlPlane]:
    """A started control plane, stopped on exit whatever happens."""
    plane = ControlPlane.start(**kwargs)
    try:
        yield plane
    finally:
        plane.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.k8s.controlplane", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a control plane and keep it running until Ctrl-C")
    up.add_argument("--work-dir", type=Path, help="keep certs, logs and kubeconfigs here (kept after exit)")
    sub.add_parser("bin-dir", help="print the directory of the built binaries")
    args = parser.parse_args(argv)

    try:
        if args.command == "bin-dir":
            print(find_bin_dir())
            return 0
        started = time.monotonic()
        plane = ControlPlane.start(work_dir=args.work_dir)
    except (ToolsMissing, ControlPlaneError) as exc:
        print(exc, file=sys.stderr)
        return 1

    return serve(plane, f"control plane up in {time.monotonic() - started:.1f} s at {plane.server}")


def serve(plane: ControlPlane, banner: str) -> int:
    """Prints how to reach `plane`, then keeps it up until SIGINT/SIGTERM or a component dies
    (exit status 1); stops it either way."""
    stop_requested = False

    def request_stop(signum: int, frame: Any) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        print(banner, file=sys.stderr)
        print(f"logs: {plane.work_dir}; Ctrl-C stops it", file=sys.stderr)
        print(f"export KUBECONFIG={plane.kubeconfig} PATH={plane.bin_dir}:$PATH", file=sys.stderr)
        print(plane.kubeconfig, flush=True)
        while not stop_requested:
            dead = [c for c in plane.components if not c.alive()]
            if dead:
                print(f"{dead[0].name} exited:\n{dead[0].log_tail()}", file=sys.stderr)
                return 1
            time.sleep(0.5)
        return 0
    finally:
        plane.stop()


if __name__ == "__main__":
    sys.exit(main())
