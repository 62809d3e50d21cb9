"""A real single-node Kubernetes cluster on this machine, for the end-to-end suite (tests/e2e).

The control plane of tests/k8s/controlplane.py (etcd, kube-apiserver, controller-manager,
scheduler) plus a real node: containerd + runc + the CNI bridge plugin, a kubelet, kube-proxy
(iptables) and CoreDNS, all run as child processes from binaries cached per machine
(tests/k8s/build.sh, tests/k8s/node/build.sh). Pods get addresses on a bridge this module
creates (`orpheus0`, 10.86.0.0/16, the host is 10.86.0.1); Service IPs (10.96.0.0/16) are
routed onto that bridge, so nothing a pod or the host sends to the cluster leaves the machine,
and pods have no route anywhere else.

One node per machine at a time (fixed bridge, cgroup and runtime paths; a lock file guards
them). `start()` first removes whatever a killed run left behind; `stop()` leaves no process,
mount, bridge, route, iptables rule or cgroup of ours behind. Both are idempotent.

    python -m tests.k8s.realnode up       # prints the admin kubeconfig path; Ctrl-C stops it
    python -m tests.k8s.realnode clean    # remove what a killed run left behind

Machine facts this depends on (docs/testing-k8s.md): root; cgroup v1 (hybrid) so the kubelet
runs with `failCgroupV1: false` and `cgroupDriver: cgroupfs` (no systemd); containerd 1.6 needs
`restrict_oom_score_adj` (root lacks CAP_SYS_RESOURCE); runc (crun fails on this hierarchy).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from tests.k8s.controlplane import (
    SERVICE_CLUSTER_IP_RANGE,
    Component,
    ControlPlane,
    ControlPlaneError,
    ToolsMissing,
    _b64,
    _http_ok,
    _certificate,
    _new_key,
    _start,
    _stop,
    _write_key,
    find_bin_dir,
    free_port,
    serve,
    write_kubeconfig,
    write_pki,
)

NODE_BUILD_SCRIPT = Path(__file__).parent / "node" / "build.sh"
NODE_BINARIES = ("kubelet", "kube-proxy", "coredns", "pause.tar", "pause.ref")
NODE_NAME = "orpheus-node"
BRIDGE = "orpheus0"
POD_SUBNET = "10.86.0.0/16"
HOST_IP = "10.86.0.1"
CLUSTER_DOMAIN = "cluster.local"
CGROUP_NAME = "orpheus-node"  # below our own cgroup, in every cgroup v1 hierarchy
CREATED_CGROUPS = Path("/run/orpheus-node.cgroups")  # cgroup directories start() made
RUN_DIR = Path("/run/orpheus-node")  # containerd's state (sockets, netns, rootfs mounts)
LOCK_FILE = Path("/run/orpheus-node.lock")
CONTAINERD_SOCK = RUN_DIR / "containerd.sock"
CNI_BIN_DIR = Path("/usr/lib/cni")
CGROUP_FS = Path("/sys/fs/cgroup")
CONTAINERD_NAMESPACE = "k8s.io"


def find_node_bin_dir() -> Path:
    """The node's built binaries; raises ToolsMissing when they are not built
    (`ORPHEUS_K8S_NODE_BIN_DIR` overrides the lookup)."""
    override = os.environ.get("ORPHEUS_K8S_NODE_BIN_DIR")
    if override:
        bin_dir = Path(override)
    else:
        if shutil.which("go") is None:
            raise ToolsMissing("Go is not installed: the test node is built from Go modules (`make k8s-node`)")
        result = subprocess.run(["bash", str(NODE_BUILD_SCRIPT), "--bin-dir"], capture_output=True, text=True,
                                timeout=60)
        if result.returncode != 0:
            raise ToolsMissing(f"`{NODE_BUILD_SCRIPT} --bin-dir` failed: {result.stderr.strip()}")
        bin_dir = Path(result.stdout.strip().splitlines()[-1])
    missing = [name for name in NODE_BINARIES if not (bin_dir / name).is_file()]
    missing += [tool for tool in ("containerd", "ctr", "runc", "iptables") if shutil.which(tool) is None]
    if not (CNI_BIN_DIR / "bridge").is_file():
        missing.append(str(CNI_BIN_DIR / "bridge"))
    if missing:
        raise ToolsMissing(f"test node: {', '.join(missing)} missing (bin dir {bin_dir}): run `make k8s-node`")
    return bin_dir


def containerd_root() -> Path:
    """containerd's content and snapshots: kept across runs, so imported images stay cached."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("ORPHEUS_K8S_NODE_STATE", f"{cache}/orpheus-tts/k8s-node-state")) / "containerd"


# --- host plumbing: every helper here is idempotent -------------------------------------------


def _sh(*argv: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check, timeout=timeout)


def _own_cgroup_parent() -> str:
    """Where our cgroups go: under this process's memory cgroup, so that everything the node runs
    stays inside the memory accounting of whoever started it."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return path.rstrip("/")
    return ""


def cgroup_root() -> str:
    """The kubelet's cgroupRoot (the same path in every v1 hierarchy)."""
    return f"{_own_cgroup_parent()}/{CGROUP_NAME}"


def _hierarchies() -> list[Path]:
    """The cgroup v1 hierarchies (not the unified one: in hybrid mode it holds no controllers)."""
    return [h for h in sorted(CGROUP_FS.iterdir()) if h.is_dir() and h.name != "unified"]


def _cgroup_dirs() -> list[Path]:
    """Every existing cgroup of ours, this run's or a killed run's (parents before children)."""
    found: set[Path] = set()
    for hierarchy in _hierarchies():
        for depth in ("", "*/", "*/*/", "*/*/*/"):
            found.update(p for p in hierarchy.glob(f"{depth}{CGROUP_NAME}") if p.is_dir())
    return sorted(found)


def _cgroup_pids() -> set[int]:
    pids: set[int] = set()
    for root in _cgroup_dirs():
        for procs in root.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(line) for line in procs.read_text().split())
    return pids


def _kill_cgroup_processes(timeout: float = 20.0) -> None:
    """SIGKILL every process in our cgroups (containers, shims, node daemons) until none is left."""
    deadline = time.monotonic() + timeout
    while True:
        pids = _cgroup_pids() - {os.getpid()}
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise ControlPlaneError(f"processes {sorted(pids)} in cgroup {CGROUP_NAME} survive SIGKILL")
        time.sleep(0.2)


def _remove_cgroups() -> None:
    for root in _cgroup_dirs():
        # Deepest first: a cgroup directory can only be removed once its children are gone.
        for directory in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts),
                                reverse=True):
            with contextlib.suppress(FileNotFoundError):
                directory.rmdir()
        with contextlib.suppress(FileNotFoundError):
            root.rmdir()
    # Parents that _create_cgroups made (our memory cgroup's path in the other hierarchies).
    if CREATED_CGROUPS.exists():
        made = [Path(line) for line in CREATED_CGROUPS.read_text().splitlines() if line]
        for directory in sorted(set(made), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):  # not empty: someone else uses it now
                directory.rmdir()
        CREATED_CGROUPS.unlink()


def _create_cgroups(name: str) -> list[Path]:
    """`cgroup_root()/name` in every hierarchy (the kubelet needs its cgroupRoot in all of them)."""
    target = f"{cgroup_root()}/{name}".strip("/")
    leaves = []
    for hierarchy in _hierarchies():
        level = hierarchy
        for part in target.split("/"):
            level = level / part
            if not level.is_dir():
                level.mkdir()
                with CREATED_CGROUPS.open("a") as record:
                    record.write(f"{level}\n")
            if hierarchy.name == "cpuset":
                # A new cpuset cgroup starts with no CPUs and no memory nodes: inherit the parent's.
                for knob in ("cpuset.cpus", "cpuset.mems"):
                    if not (level / knob).read_text().strip():
                        (level / knob).write_text((level.parent / knob).read_text())
        leaves.append(level)
    return leaves


def _mounts_under(*prefixes: Path) -> list[str]:
    points = []
    with open("/proc/self/mountinfo") as info:
        for line in info:
            point = line.split()[4].replace("\\040", " ")
            if any(point == str(p) or point.startswith(f"{p}/") for p in prefixes):
                points.append(point)
    return points


def _unmount_under(*prefixes: Path) -> None:
    for _ in range(5):
        points = _mounts_under(*prefixes)
        if not points:
            return
        for point in reversed(points):  # mountinfo lists parents before children
            _sh("umount", point, check=False)
    for point in reversed(_mounts_under(*prefixes)):
        _sh("umount", "--lazy", point, check=False)


def _remove_kube_chains() -> None:
    """Deletes every KUBE-* chain and the rules jumping to them, in every table, IPv4 and IPv6:
    kube-proxy's (if its --cleanup missed any) and the kubelet's canary/firewall chains."""
    for binary in ("iptables", "ip6tables"):
        if shutil.which(binary) is None:
            continue
        for table in ("filter", "nat", "mangle", "raw"):
            listed = _sh(binary, "-w", "-t", table, "-S", check=False)
            if listed.returncode != 0:
                continue
            lines = listed.stdout.splitlines()
            for rule in (line for line in lines if line.startswith("-A ") and "KUBE-" in line):
                _sh(binary, "-w", "-t", table, "-D", *shlex.split(rule)[1:], check=False)
            chains = [line.split()[1] for line in lines if line.startswith("-N KUBE-")]
            for chain in chains:
                _sh(binary, "-w", "-t", table, "-F", chain, check=False)
            for chain in chains:
                _sh(binary, "-w", "-t", table, "-X", chain, check=False)


def _iptables_rules_of_ours() -> list[str]:
    """iptables-save lines that belong to the node: kube-proxy's KUBE-* chains and the CNI's."""
    out = ""
    for save in ("iptables-save", "ip6tables-save"):
        if shutil.which(save):
            out += _sh(save, check=False).stdout
    return [line for line in out.splitlines() if "KUBE-" in line or BRIDGE in line or "orpheus-node" in line]


@dataclass
class NodeLeftovers:
    processes: list[int]
    mounts: list[str]
    bridge: bool
    routes: list[str]
    iptables: list[str]
    cgroups: list[str]

    def empty(self) -> bool:
        return not (self.processes or self.mounts or self.bridge or self.routes or self.iptables or self.cgroups)


def leftovers(work_dirs: tuple[Path, ...] = ()) -> NodeLeftovers:
    """What of a node is still on this machine (all empty after a clean stop)."""
    bridge = _sh("ip", "link", "show", BRIDGE, check=False).returncode == 0
    routes = [r for r in _sh("ip", "route", "show", check=False).stdout.splitlines() if BRIDGE in r]
    return NodeLeftovers(
        processes=sorted(_cgroup_pids()),
        mounts=_mounts_under(RUN_DIR, *work_dirs),
        bridge=bridge,
        routes=routes,
        iptables=_iptables_rules_of_ours(),
        cgroups=[str(p) for p in _cgroup_dirs() if p.exists()],
    )


def clean_host(bin_dir: Path | None = None, work_dirs: tuple[Path, ...] = ()) -> None:
    """Removes everything a node leaves on the host; safe to call when nothing is there."""
    _kill_cgroup_processes()
    _unmount_under(RUN_DIR, *work_dirs)
    if bin_dir is not None and (bin_dir / "kube-proxy").is_file():
        # kube-proxy's own cleanup removes exactly its chains and rules.
        _sh(str(bin_dir / "kube-proxy"), "--cleanup", "--v=0", check=False, timeout=120)
    _remove_kube_chains()
    _sh("ip", "route", "del", SERVICE_CLUSTER_IP_RANGE, "dev", BRIDGE, check=False)
    _sh("ip", "link", "del", BRIDGE, check=False)
    _remove_cgroups()
    shutil.rmtree(RUN_DIR, ignore_errors=True)


def _setup_network() -> None:
    if _sh("ip", "link", "show", BRIDGE, check=False).returncode != 0:
        _sh("ip", "link", "add", BRIDGE, "type", "bridge")
    _sh("ip", "addr", "replace", f"{HOST_IP}/{POD_SUBNET.split('/')[1]}", "dev", BRIDGE)
    _sh("ip", "link", "set", BRIDGE, "up")
    # Service IPs go onto the bridge, where kube-proxy's DNAT sends them on; never out of the host.
    _sh("ip", "route", "replace", SERVICE_CLUSTER_IP_RANGE, "dev", BRIDGE, "src", HOST_IP)
    # Pod -> Service -> pod on the same bridge needs bridged packets to pass iptables.
    if not Path("/proc/sys/net/bridge").is_dir():
        raise ControlPlaneError("the br_netfilter kernel module is not loaded (`modprobe br_netfilter`)")
    for knob in ("net/bridge/bridge-nf-call-iptables", "net/ipv4/ip_forward"):
        path = Path("/proc/sys") / knob
        if path.exists() and path.read_text().strip() != "1":
            path.write_text("1")


# --- configuration files ----------------------------------------------------------------------


def containerd_config(pause_ref: str, cni_conf_dir: Path) -> str:
    return f"""version = 2
root = "{containerd_root()}"
state = "{RUN_DIR}/containerd"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{CONTAINERD_SOCK}"
[ttrpc]
  address = "{CONTAINERD_SOCK}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause_ref}"
  # Root here lacks CAP_SYS_RESOURCE: without this runc fails on a negative oom_score_adj.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{shutil.which('runc')}"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{cni_conf_dir}"
    max_conf_num = 1
"""


def cni_config(ipam_dir: Path) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "orpheus-node",
        "plugins": [{
            "type": "bridge",
            "bridge": BRIDGE,
            "isGateway": True,
            "ipMasq": False,  # pods reach the host, each other and Services; nothing beyond
            "hairpinMode": True,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": POD_SUBNET, "gateway": HOST_IP}]],
                "routes": [{"dst": SERVICE_CLUSTER_IP_RANGE}],
                "dataDir": str(ipam_dir),
            },
        }],
    }


def kubelet_config(ca_cert: Path, serving_cert: Path, serving_key: Path, port: int, healthz_port: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,  # this machine's cgroups are v1 (hybrid)
        "cgroupDriver": "cgroupfs",  # no systemd here
        "cgroupRoot": cgroup_root(),
        "containerRuntimeEndpoint": f"unix://{CONTAINERD_SOCK}",
        "address": HOST_IP,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "tlsCertFile": str(serving_cert),
        "tlsPrivateKeyFile": str(serving_key),
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False},
                           "x509": {"clientCAFile": str(ca_cert)}},
        "authorization": {"mode": "AlwaysAllow"},
        "clusterDNS": [HOST_IP],
        "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": "",  # pods resolve cluster names only: nothing from the host's resolv.conf
        "failSwapOn": False,
        "serializeImagePulls": False,
        # Images are imported, never pulled: garbage collection must not remove them.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                         "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
        "enforceNodeAllocatable": ["pods"],
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "protectKernelDefaults": False,
        "makeIPTablesUtilChains": False,  # kube-proxy owns the node's iptables rules
        "shutdownGracePeriod": "0s",
        "nodeStatusReportFrequency": "10s",
        "maxPods": 50,
    }


def corefile(kubeconfig: Path, port: int, health_port: int, ready_port: int) -> str:
    return f""".:{port} {{
    bind {HOST_IP}
    errors
    health 127.0.0.1:{health_port}
    ready 127.0.0.1:{ready_port}
    cache 5
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
        ttl 5
    }}
}}
"""


# --- the cluster ------------------------------------------------------------------------------


@dataclass
class NodeCluster(ControlPlane):
    """The control plane with one real node. Start with `NodeCluster.start_node()`; always `stop()`."""

    node_bin_dir: Path = Path()
    lock_fd: int | None = None
    node_components: list[Component] = field(default_factory=list)

    @classmethod
    def start_node(cls, bin_dir: Path | None = None, node_bin_dir: Path | None = None,
                   work_dir: Path | None = None, timeout: float = 240.0) -> NodeCluster:
        bin_dir = bin_dir or find_bin_dir()
        node_bin_dir = node_bin_dir or find_node_bin_dir()
        lock_fd = os.open(LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise ControlPlaneError(f"another test node runs on this machine ({LOCK_FILE} is locked)") from None
        keep = work_dir is not None or bool(os.environ.get("ORPHEUS_K8S_KEEP"))
        work_dir = work_dir or Path(tempfile.mkdtemp(prefix="orpheus-node-"))
        try:
            clean_host(node_bin_dir)  # whatever a killed run left behind
            work_dir.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(work_dir / "etcd", ignore_errors=True)
            pki = write_pki(work_dir / "pki")
            port = free_port()
            server = f"https://{HOST_IP}:{port}"
            kubeconfig = write_kubeconfig(
                work_dir / "admin.kubeconfig", server, pki.ca_cert,
                {"client-certificate-data": _b64(pki.admin_cert), "client-key-data": _b64(pki.admin_key)},
            )
        except BaseException:
            fcntl.flock(lock_fd, fcntl.LOCK_UN)
            os.close(lock_fd)
            raise
        node = cls(bin_dir, work_dir, kubeconfig, server, pki, keep_work_dir=keep, node_bin_dir=node_bin_dir,
                   lock_fd=lock_fd)
        try:
            node._boot_node(port, time.monotonic() + timeout)
        except BaseException:
            node.stop()
            raise
        return node

    def _issue(self, name: str, cn: str, org: str | None = None, *, server_ips: tuple[str, ...] = (),
               server_names: tuple[str, ...] = (), client: bool = False) -> tuple[Path, Path]:
        """A certificate signed by the cluster CA, written as `pki/<name>.crt|key`."""
        ca_key = serialization.load_pem_private_key(self.pki.ca_key.read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate(self.pki.ca_cert.read_bytes())
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)] if org else []
        key = _new_key()
        cert = _certificate(x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, cn)]), key,
                            ca_cert.subject, ca_key, server_ips=server_ips, server_names=server_names,
                            client=client)  # type: ignore[arg-type]
        cert_path, key_path = self.pki.ca_cert.parent / f"{name}.crt", self.pki.ca_cert.parent / f"{name}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key_path, key)
        return cert_path, key_path

    def _client_kubeconfig(self, name: str, cn: str, org: str | None = None) -> Path:
        cert, key = self._issue(name, cn, org, client=True)
        return write_kubeconfig(self.work_dir / f"{name}.kubeconfig", self.server, self.pki.ca_cert,
                                {"client-certificate": str(cert), "client-key": str(key)})

    def _node_run(self, name: str, argv: list[str]) -> Component:
        component = _start(name, argv, self.work_dir)
        # Into our cgroups, so that stop() finds every process the component starts (containerd's shims).
        for directory in _create_cgroups("node"):
            with contextlib.suppress(OSError):
                (directory / "cgroup.procs").write_text(str(component.process.pid))
        self.node_components.append(component)
        self.components.append(component)
        return component

    def _boot_node(self, apiserver_port: int, deadline: float) -> None:
        _create_cgroups("node")
        _setup_network()
        # The serving cert must also name the host's bridge address and the `kubernetes` Service IP.
        service_ip = SERVICE_CLUSTER_IP_RANGE.split("/")[0].rsplit(".", 1)[0] + ".1"
        serving_cert, serving_key = self._issue(
            "apiserver-node", "kube-apiserver", server_ips=("127.0.0.1", HOST_IP, service_ip),
            server_names=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                          f"kubernetes.default.svc.{CLUSTER_DOMAIN}"))
        apiserver_client_cert, apiserver_client_key = self._issue(
            "apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters", client=True)

        p = self.pki
        self._start_control_plane(apiserver_port, deadline, address=HOST_IP, serving=(serving_cert, serving_key),
                                  apiserver_flags=(
                                      f"--kubelet-client-certificate={apiserver_client_cert}",
                                      f"--kubelet-client-key={apiserver_client_key}",
                                      f"--kubelet-certificate-authority={p.ca_cert}",
                                      "--kubelet-preferred-address-types=InternalIP"))

        # The runtime: containerd with the CRI plugin, runc and the CNI bridge.
        cni_dir = self.work_dir / "cni"
        cni_dir.mkdir(exist_ok=True)
        (cni_dir / "10-orpheus.conflist").write_text(json.dumps(cni_config(self.work_dir / "cni-ipam"), indent=2))
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        containerd_root().mkdir(parents=True, exist_ok=True)
        pause_ref = (self.node_bin_dir / "pause.ref").read_text().strip()
        config = self.work_dir / "containerd.toml"
        config.write_text(containerd_config(pause_ref, cni_dir))
        self._node_run("containerd", [shutil.which("containerd") or "containerd", f"--config={config}"])
        self._wait("containerd", lambda: self.ctr("version", check=False).returncode == 0, deadline)
        self.import_image(self.node_bin_dir / "pause.tar")

        kubelet_port, kubelet_healthz = free_port(), free_port()
        kubelet_cert, kubelet_key = self._issue("kubelet-serving", NODE_NAME, server_ips=(HOST_IP, "127.0.0.1"),
                                                server_names=(NODE_NAME,))
        kubelet_conf = self.work_dir / "kubelet.json"
        kubelet_conf.write_text(json.dumps(kubelet_config(p.ca_cert, kubelet_cert, kubelet_key, kubelet_port,
                                                          kubelet_healthz), indent=2))
        node_kubeconfig = self._client_kubeconfig("kubelet", f"system:node:{NODE_NAME}", "system:nodes")
        self._node_run("kubelet", [
            str(self.node_bin_dir / "kubelet"),
            f"--config={kubelet_conf}",
            f"--kubeconfig={node_kubeconfig}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={HOST_IP}",
            f"--root-dir={self.work_dir / 'kubelet'}",
            f"--cert-dir={self.work_dir / 'kubelet-pki'}",
            "--node-labels=orpheus.dev/test-node=true",
            "--v=1",
        ])
        proxy_kubeconfig = self._client_kubeconfig("kube-proxy", "system:kube-proxy")
        self._node_run("kube-proxy", [
            str(self.node_bin_dir / "kube-proxy"),
            f"--kubeconfig={proxy_kubeconfig}",
            f"--hostname-override={NODE_NAME}",
            "--proxy-mode=iptables",
            f"--cluster-cidr={POD_SUBNET}",
            # NodePorts answer on the bridge address only, never on the host's other interfaces.
            f"--nodeport-addresses={HOST_IP}/32",
            "--conntrack-max-per-core=0",
            f"--metrics-bind-address=127.0.0.1:{free_port()}",
            f"--healthz-bind-address=127.0.0.1:{free_port()}",
            "--v=1",
        ])
        dns_health, dns_ready = free_port(), free_port()
        dns_conf = self.work_dir / "Corefile"
        dns_conf.write_text(corefile(self._client_kubeconfig("coredns", "system:coredns", "system:masters"), 53,
                                     dns_health, dns_ready))
        self._node_run("coredns", [str(self.node_bin_dir / "coredns"), f"-conf={dns_conf}"])

        with self._admin_http() as http:
            self._wait("the node to be Ready", lambda: self._node_ready(http), deadline, interval=0.5)
            self._wait("the default ServiceAccount",
                       lambda: http.get("/api/v1/namespaces/default/serviceaccounts/default").status_code == 200,
                       deadline)
        self._wait("CoreDNS /ready", lambda: _http_ok(f"http://127.0.0.1:{dns_ready}/ready"), deadline)

    @staticmethod
    def _node_ready(http: httpx.Client) -> bool:
        response = http.get(f"/api/v1/nodes/{NODE_NAME}")
        if response.status_code != 200:
            return False
        conditions = response.json().get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    # -- use --

    def ctr(self, *args: str, check: bool = True, timeout: float = 600.0) -> subprocess.CompletedProcess[str]:
        """Runs containerd's `ctr` against this node's containerd, in the CRI namespace."""
        argv = ["ctr", f"--address={CONTAINERD_SOCK}", "--namespace", CONTAINERD_NAMESPACE, *args]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(result.returncode, argv, result.stdout, result.stderr)
        return result

    def import_image(self, archive: Path) -> None:
        """Imports a docker/OCI archive into the node's image store, unless this exact archive
        (by the `.id` written beside it, or its size and mtime) was imported before."""
        id_file = archive.with_name(archive.name + ".id")
        stamp = id_file.read_text().strip() if id_file.exists() else f"{archive.stat().st_size}-{archive.stat().st_mtime_ns}"
        marker = containerd_root() / "orpheus-imported" / archive.name
        refs_file = marker.with_suffix(".refs")
        if marker.exists() and marker.read_text() == stamp and refs_file.exists():
            listed = self.ctr("images", "ls", "-q").stdout.split()
            if all(ref in listed for ref in refs_file.read_text().split()):
                return
        out = self.ctr("images", "import", str(archive)).stdout
        refs = [line.split()[1] for line in out.splitlines() if line.startswith("unpacking ")] or \
            [line.split()[0] for line in out.splitlines() if line.strip()]
        marker.parent.mkdir(parents=True, exist_ok=True)
        refs_file.write_text("\n".join(refs))
        marker.write_text(stamp)

    def diagnostics(self, namespace: str) -> str:
        """What to read when something on the node did not come up: the namespace's objects,
        events and pod descriptions, the node's conditions, the node daemons' log tails and the
        host's memory and load (the work dir and its logs are gone after stop())."""
        parts = []
        for args in (("get", "all,events", "-n", namespace, "-o", "wide"), ("describe", "pods", "-n", namespace),
                     ("describe", "node", NODE_NAME)):
            out = self.kubectl(*args, check=False)
            parts.append(f"--- kubectl {' '.join(args)}\n{out.stdout}{out.stderr}")
        parts += [f"--- {c.name} ({'running' if c.alive() else f'exited {c.process.returncode}'}):\n{c.log_tail(40)}"
                  for c in self.node_components]
        with contextlib.suppress(OSError):
            meminfo = Path("/proc/meminfo").read_text().splitlines()[:5]
            parts.append("--- /proc/meminfo\n" + "\n".join(meminfo) + f"\n--- load {Path('/proc/loadavg').read_text()}")
        return "\n".join(parts)

    def stop(self) -> None:
        """Deletes the node's pods, stops every process and removes what the node put on the host.

        Idempotent; the work dir is removed unless asked to keep it."""
        if self.lock_fd is None:
            return
        try:
            # Node daemons first (kubelet before the runtime, so it stops restarting containers),
            # then the control plane in reverse start order (API server before etcd).
            _stop(list(reversed(self.node_components)), grace=5.0)
            _stop([c for c in reversed(self.components) if c not in self.node_components])
            clean_host(self.node_bin_dir, (self.work_dir,))
        finally:
            if not self.keep_work_dir:
                shutil.rmtree(self.work_dir, ignore_errors=True)
            fcntl.flock(self.lock_fd, fcntl.LOCK_UN)
            os.close(self.lock_fd)
            self.lock_fd = None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.k8s.realnode", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the cluster and keep it running until Ctrl-C")
    up.add_argument("--work-dir", type=Path, help="keep certs, logs and kubeconfigs here (kept after exit)")
    sub.add_parser("clean", help="remove what a killed node left on this machine")
    sub.add_parser("leftovers", help="print what of a node is still on this machine")
    args = parser.parse_args(argv)
    if args.command == "clean":
        with contextlib.suppress(ToolsMissing):
            clean_host(find_node_bin_dir())
        return 0
    if args.command == "leftovers":
        found = leftovers()
        print(json.dumps(found.__dict__, indent=2))
        return 0 if found.empty() else 1
    started = time.monotonic()
    try:
        node = NodeCluster.start_node(work_dir=args.work_dir)
    except (ToolsMissing, ControlPlaneError) as exc:
        print(exc, file=sys.stderr)
        return 1
    return serve(node, f"node up in {time.monotonic() - started:.1f} s at {node.server}")


if __name__ == "__main__":
    sys.exit(main())
