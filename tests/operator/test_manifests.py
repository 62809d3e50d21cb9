"""Manifests built from a spec, without a cluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from orpheus_operator import crd, manifests
from orpheus_operator.cluster import Cluster
from orpheus_operator.manifests import Options, children

ROOT = Path(__file__).resolve().parents[2]


def body(spec: dict[str, Any] | None = None, status: dict[str, Any] | None = None,
         name: str = "tts", namespace: str = "voice") -> dict[str, Any]:
    return {"apiVersion": crd.API_VERSION, "kind": crd.KIND,
            "metadata": {"name": name, "namespace": namespace, "uid": "uid-1", "generation": 1},
            "spec": spec if spec is not None else
            {"model": {"name": "canopylabs/orpheus-3b-0.1-ft"},
             "gateway": {"auth": {"secretRef": {"name": "api-keys"}}}},
            "status": status or {}}


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in objects}


def example(name: str) -> dict[str, Any]:
    docs = list(yaml.safe_load_all((ROOT / "examples" / name).read_text()))
    return next(d for d in docs if d and d["kind"] == crd.KIND)


def arg(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_children_are_owned_labelled_and_namespaced() -> None:
    objects = children(Cluster.from_body(body()))
    kinds = sorted(by_kind(objects))
    assert kinds == sorted([
        "ConfigMap/tts-config", "ServiceAccount/tts-gateway", "Role/tts-gateway",
        "RoleBinding/tts-gateway", "NetworkPolicy/tts-worker", "Service/tts-workers",
        "Deployment/tts-worker",
        "Service/tts-gateway", "Deployment/tts-gateway", "PodDisruptionBudget/tts-worker",
        "PodDisruptionBudget/tts-gateway"])
    for obj in objects:
        meta = obj["metadata"]
        assert meta["namespace"] == "voice"
        assert meta["ownerReferences"] == [{
            "apiVersion": "tts.orpheus.dev/v1alpha1", "kind": "OrpheusCluster", "name": "tts",
            "uid": "uid-1", "controller": True, "blockOwnerDeletion": True}]
        assert meta["labels"]["app.kubernetes.io/instance"] == "tts"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "orpheus-operator"


def test_service_monitor_only_when_its_crd_exists() -> None:
    cluster = Cluster.from_body(body())
    assert "ServiceMonitor/tts" not in by_kind(children(cluster))
    monitor = by_kind(children(cluster, Options(service_monitor=True)))["ServiceMonitor/tts"]
    assert monitor["spec"]["endpoints"][0]["port"] == "http"


def test_worker_pod_template() -> None:
    deployment = by_kind(children(Cluster.from_body(body())))["Deployment/tts-worker"]
    pod = deployment["spec"]["template"]
    spec = pod["spec"]
    container = spec["containers"][0]
    # The worker's probes tell the truth: startup passes once the model is loaded (so a hung
    # load is restarted after startupSeconds), liveness fails when the engine died, readiness
    # is admission.
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] == "/startupz"
    assert startup["periodSeconds"] * startup["failureThreshold"] == 900  # startupSeconds
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    drain = int(arg(container["args"], "--drain-seconds"))
    assert spec["terminationGracePeriodSeconds"] >= pre_stop + drain + 5
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    assert "emptyDir" in volumes["model-cache"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/dev/shm", "/models"} <= mounts
    assert container["resources"] == {"limits": {"nvidia.com/gpu": 1}}
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "8100"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_worker_args_use_the_cli_flags() -> None:
    spec = {"model": {"name": "org/model", "revision": "abc123", "snac": "org/snac"},
            "engine": {"maxNumSeqs": 8, "gpuMemoryUtilization": 0.8, "maxModelLen": 2048,
                       "dtype": "bfloat16", "extraArgs": {"enforce-eager": "true"}},
            "workers": {"drainSeconds": 45},
            "gateway": {"auth": {"enabled": False}}}
    args = manifests.worker_args(Cluster.from_body(body(spec)))
    assert args[0] == "worker"
    assert arg(args, "--model") == "org/model"
    assert arg(args, "--snac") == "org/snac"
    assert arg(args, "--port") == "8100"
    assert arg(args, "--worker-id") == "$(POD_NAME)"
    assert arg(args, "--host") == "0.0.0.0"
    assert "--voices" not in args  # the worker's default set
    assert "--constrain-to-audio-tokens" not in args
    assert arg(args, "--max-num-seqs") == "8"
    assert arg(args, "--gpu-memory-utilization") == "0.8"
    assert arg(args, "--max-model-len") == "2048"
    assert arg(args, "--dtype") == "bfloat16"
    assert arg(args, "--drain-seconds") == "45"
    engine_args = [args[i + 1] for i, a in enumerate(args) if a == "--engine-arg"]
    assert engine_args == ["enforce-eager=true", "revision=abc123"]


def test_gateway_auth_from_the_secret_or_explicitly_off() -> None:
    with_auth = Cluster.from_body(body())
    deployment = manifests.gateway_deployment(with_auth)
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert arg(args, "--api-keys-file") == "/etc/orpheus/keys/keys"
    assert "--no-auth" not in args
    assert arg(args, "--discover") == "voice/tts-workers"
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["api-keys"]["secret"]["secretName"] == "api-keys"
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "tts-gateway"

    no_auth = Cluster.from_body(body({"model": {"standIn": True},
                                      "gateway": {"auth": {"enabled": False}}}))
    args = manifests.gateway_args(no_auth)
    assert "--no-auth" in args and "--api-keys-file" not in args


def test_gateway_role_only_watches_endpointslices() -> None:
    role = by_kind(children(Cluster.from_body(body())))["Role/tts-gateway"]
    assert role["rules"] == [{"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                              "verbs": ["get", "list", "watch"]}]


@pytest.mark.parametrize("enabled", [False, True])
def test_worker_replicas_are_the_scale_subresource_whatever_the_status(enabled: bool) -> None:
    """The manifests are a pure function of spec: `spec.workers.replicas` (which `kubectl
    scale`, KEDA, an HPA or the built-in autoscaler write through /scale), never status."""
    spec = {"model": {"standIn": True}, "gateway": {"auth": {"enabled": False}},
            "workers": {"replicas": 2, "minReplicas": 0, "maxReplicas": 4},
            "autoscaling": {"enabled": enabled}}
    status = {"autoscaler": {"desiredReplicas": 3, "state": {}}, "metrics": {"queueDepth": 9}}
    with_status = children(Cluster.from_body(body(spec, status)))
    assert with_status == children(Cluster.from_body(body(spec)))
    assert by_kind(with_status)["Deployment/tts-worker"]["spec"]["replicas"] == 2
    zero = manifests.worker_deployment(Cluster.from_body(body(
        {**spec, "workers": {**spec["workers"], "replicas": 0}})))
    assert zero["spec"]["replicas"] == 0


def test_gateway_is_given_the_system_key_only_with_auth() -> None:
    spec = {"model": {"standIn": True},
            "gateway": {"auth": {"enabled": True, "secretRef": {"name": "keys"}}}}
    gateway = manifests.gateway_deployment(Cluster.from_body(body(spec)))
    pod = gateway["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert arg(args, "--system-keys-file") == f"{manifests.SYSTEM_KEY_MOUNT}/key"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["system-key"]["secret"]["secretName"] == "tts-system-key"
    secret = manifests.system_key_secret(Cluster.from_body(body(spec)), "k3y")
    assert secret["stringData"] == {"key": "k3y"}
    assert secret["metadata"]["ownerReferences"][0]["controller"] is True
    open_gateway = manifests.gateway_deployment(Cluster.from_body(body(
        {**spec, "gateway": {"auth": {"enabled": False}}})))
    assert "--system-keys-file" not in open_gateway["spec"]["template"]["spec"][
        "containers"][0]["args"]
    probes = pod["containers"][0]
    # The gateway's readiness is its own (it holds requests while no worker is ready).
    assert probes["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_pvc_cache_and_config_hash_rolls_pods() -> None:
    spec = {"model": {"name": "m", "cache": {"type": "pvc", "claimName": "weights"}},
            "gateway": {"auth": {"enabled": False}}}
    cluster = Cluster.from_body(body(spec))
    volumes = {v["name"]: v for v in
               manifests.worker_deployment(cluster)["spec"]["template"]["spec"]["volumes"]}
    assert volumes["model-cache"] == {"name": "model-cache",
                                      "persistentVolumeClaim": {"claimName": "weights"}}
    aliased = Cluster.from_body(body({**spec, "gateway": {"auth": {"enabled": False},
                                                          "voiceAliases": {"alloy": "tara"}}}))
    assert manifests.config_hash(cluster) != manifests.config_hash(aliased)
    gateway = manifests.gateway_deployment(aliased)["spec"]["template"]
    assert gateway["metadata"]["annotations"]["tts.orpheus.dev/config-hash"] == \
        manifests.config_hash(aliased)
    args = gateway["spec"]["containers"][0]["args"]
    assert arg(args, "--voice-aliases") == "/etc/orpheus/config/voice-aliases.json"
    data = manifests.config_map(aliased)["data"]["voice-aliases.json"]
    assert json.loads(data) == {"alloy": "tara"}
    assert "--voice-aliases" not in manifests.gateway_args(cluster)  # built-in OpenAI map


def test_kind_example_runs_the_stand_in_on_cpu() -> None:
    cluster = Cluster.from_body({**example("orpheus-cluster.yaml"),
                                 "metadata": {"name": "demo", "namespace": "d", "uid": "u"}})
    pod = manifests.worker_deployment(cluster)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert "nvidia.com/gpu" not in str(container["resources"])
    # The CPU worker image (images/worker-cpu.Dockerfile): the CUDA one cannot run vLLM on kind.
    assert container["image"] == "orpheus-tts-worker-cpu:latest"
    assert (ROOT / "images" / "worker-cpu.Dockerfile").is_file()
    init = pod["initContainers"][0]
    assert init["args"][0] == "make-tiny-model"
    target = init["args"][1]
    assert arg(container["args"], "--model") == f"{target}/llm"
    assert arg(container["args"], "--snac") == f"{target}/snac"
    assert "--constrain-to-audio-tokens" in container["args"]


def test_gke_example_targets_gpu_nodes() -> None:
    cluster = Cluster.from_body({**example("orpheus-cluster-gke.yaml"),
                                 "metadata": {"name": "prod", "namespace": "d", "uid": "u"}})
    pod = manifests.worker_deployment(cluster)["spec"]["template"]["spec"]
    assert "cloud.google.com/gke-accelerator" in pod["nodeSelector"]
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    args = pod["containers"][0]["args"]
    assert arg(args, "--voices") == "tara,leah,jess,leo,dan,mia,zac,zoe"


# --- hardening (issue 12) ------------------------------------------------------------------------
def _pods(cluster_body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    objects = by_kind(children(Cluster.from_body(cluster_body)))
    return {name: objects[f"Deployment/tts-{name}"]["spec"]["template"]["spec"]
            for name in ("worker", "gateway")}


@pytest.mark.parametrize("stand_in", [False, True])
def test_pods_are_restricted_non_root_read_only_with_writable_volumes(stand_in: bool) -> None:
    spec = {"model": {"standIn": True} if stand_in else {"name": "canopylabs/orpheus-3b-0.1-ft"},
            "gateway": {"auth": {"secretRef": {"name": "api-keys"}}}}
    for name, pod in _pods(body(spec)).items():
        ctx = pod["securityContext"]
        assert ctx["runAsNonRoot"] and ctx["runAsUser"] == ctx["fsGroup"] == manifests.RUN_AS
        assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
        containers = pod["containers"] + pod.get("initContainers", [])
        assert len(containers) == (2 if stand_in and name == "worker" else 1)
        volumes = {v["name"] for v in pod["volumes"]}
        for c in containers:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
            assert sc["capabilities"] == {"drop": ["ALL"]}
            mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            assert mounts["/tmp"] in volumes  # where HOME and the caches point
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            assert env["HOME"] == "/tmp" and env["XDG_CACHE_HOME"].startswith("/tmp/")
    worker = _pods(body(spec))["worker"]["containers"][0]
    cache = next(m for m in worker["volumeMounts"] if m["name"] == "model-cache")
    assert not cache.get("readOnly")  # the model download writes there, as group fsGroup


def test_workers_require_the_internal_token_and_only_gateways_reach_them() -> None:
    objects = by_kind(children(Cluster.from_body(body())))
    for name, pod in _pods(body()).items():
        env = {e["name"]: e for e in pod["containers"][0]["env"]}
        ref = env["ORPHEUS_INTERNAL_TOKEN"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "tts-internal-token", "key": "token"}, name
    secret = manifests.internal_token_secret(Cluster.from_body(body()), "t0ken")
    assert secret["metadata"]["name"] == "tts-internal-token"
    assert secret["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert "Secret/tts-internal-token" not in objects  # made once, never re-applied
    policy = objects["NetworkPolicy/tts-worker"]["spec"]
    worker_labels = objects["Deployment/tts-worker"]["spec"]["template"]["metadata"]["labels"]
    gateway_labels = objects["Deployment/tts-gateway"]["spec"]["template"]["metadata"]["labels"]
    assert policy["policyTypes"] == ["Ingress"]
    assert policy["podSelector"]["matchLabels"].items() <= worker_labels.items()
    assert not policy["podSelector"]["matchLabels"].items() <= gateway_labels.items()
    (rule,) = policy["ingress"]
    (peer,) = rule["from"]
    assert set(peer) == {"podSelector"}  # same namespace, gateway pods only
    assert peer["podSelector"]["matchLabels"].items() <= gateway_labels.items()
    assert not peer["podSelector"]["matchLabels"].items() <= worker_labels.items()
    assert rule["ports"] == [{"protocol": "TCP", "port": manifests.WORKER_PORT}]


@pytest.mark.parametrize("replicas,rpm,streams,want", [
    (1, 600, 16, (600, 16)), (2, 600, 16, (300, 8)), (3, 100, 5, (34, 2)), (4, 1, 1, (1, 1))])
def test_limits_are_cluster_wide_and_divided_among_gateway_replicas(replicas, rpm, streams,
                                                                      want) -> None:
    spec = {"model": {"name": "m"}, "gateway": {
        "replicas": replicas, "auth": {"secretRef": {"name": "api-keys"}},
        "limits": {"requestsPerMinute": rpm, "concurrentStreams": streams}}}
    args = by_kind(children(Cluster.from_body(body(spec))))["Deployment/tts-gateway"][
        "spec"]["template"]["spec"]["containers"][0]["args"]
    assert (int(arg(args, "--rate-limit-rpm")), int(arg(args, "--max-streams-per-key"))) == want
