"""Manifests built from a spec, without a cluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from orpheus_operator import crd, manifests
from orpheus_operator.manifests import Cluster, Options, children

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
        "RoleBinding/tts-gateway", "Service/tts-workers", "Deployment/tts-worker",
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
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 900  # model loading
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


@pytest.mark.parametrize("enabled, desired, expected", [
    (False, 7, 2),   # autoscaler off: spec.workers.replicas
    (True, 3, 3),    # autoscaler on: its decision
    (True, 99, 4),   # clamped to maxReplicas
    (True, None, 2),  # no decision yet: spec.workers.replicas
])
def test_worker_replicas_contract(enabled: bool, desired: int | None, expected: int) -> None:
    spec = {"model": {"standIn": True}, "gateway": {"auth": {"enabled": False}},
            "workers": {"replicas": 2, "minReplicas": 1, "maxReplicas": 4},
            "autoscaling": {"enabled": enabled}}
    status = {"autoscaler": {"desiredReplicas": desired}} if desired is not None else {}
    deployment = manifests.worker_deployment(Cluster.from_body(body(spec, status)))
    assert deployment["spec"]["replicas"] == expected


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
