"""Model pools (`spec.pools`) from spec to manifests, gateway pools file and per-pool scaling,
without a cluster (tests/k8s/test_pools.py runs them on the control plane)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orpheus_gateway import models as gateway_models
from orpheus_gateway import pools as gateway_pools
from orpheus_gateway.config import read_pools_file
from orpheus_operator import crd, manifests
from orpheus_operator.autoscaler.policy import AutoscalingSpec, PolicyState, decide
from orpheus_operator.autoscaler.signals import SignalsUnavailable, signals_by_pool
from orpheus_operator.cluster import POOL_LABEL, Cluster
from orpheus_operator.status import DeploymentState, Observed, compute_conditions, compute_status
from orpheus_tts.protocol import PoolState, SystemSnapshot, WorkerState
from tests.operator.test_manifests import body, by_kind, example

POOLS_EXAMPLE = "orpheus-cluster-pools.yaml"
GKE_POOLS_EXAMPLE = "orpheus-cluster-pools-gke.yaml"


def cluster_of(name: str) -> Cluster:
    obj = example(name)
    obj["metadata"].update(namespace="voice", uid="uid-1")
    return Cluster.from_body(obj)


def test_the_crd_keeps_the_gateways_pool_rules() -> None:
    assert crd.MAX_POOLS == gateway_pools.MAX_POOLS
    assert crd.POOL_NAME_PATTERN == gateway_pools.POOL_NAME_PATTERN.pattern
    assert set(crd.GENERIC_MODEL_NAMES) == set(gateway_models.OPENAI_MODEL_NAMES)


def test_single_model_form_is_one_pool_with_the_names_it_always_had() -> None:
    cluster = Cluster.from_body(body())
    (pool,) = cluster.pools
    assert (pool.name, pool.single, cluster.single_pool) == ("default", True, True)
    assert (pool.worker_name, pool.service_name) == ("tts-worker", "tts-workers")
    deployment = manifests.worker_deployment(cluster)
    # The selector is immutable: an upgrade must find it exactly as before pools existed.
    assert deployment["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "orpheus-tts", "app.kubernetes.io/instance": "tts",
        "app.kubernetes.io/component": "worker"}
    assert POOL_LABEL not in json.dumps(children := manifests.children(cluster))
    assert "--discover" in manifests.gateway_args(cluster)
    assert "voice-aliases.json" in by_kind(children)["ConfigMap/tts-config"]["data"]


def test_two_pools_render_a_worker_fleet_each_and_one_gateway() -> None:
    cluster = cluster_of(POOLS_EXAMPLE)
    objects = by_kind(manifests.children(cluster))
    assert sorted(k for k in objects if k.startswith("Deployment/")) == [
        "Deployment/babel-arabic-worker", "Deployment/babel-english-worker",
        "Deployment/babel-gateway"]
    assert sorted(k for k in objects if k.startswith("PodDisruptionBudget/")) == [
        "PodDisruptionBudget/babel-arabic-worker", "PodDisruptionBudget/babel-english-worker",
        "PodDisruptionBudget/babel-gateway"]
    (policy,) = [o for o in objects.values() if o["kind"] == "NetworkPolicy"]
    selected = policy["spec"]["podSelector"]["matchLabels"]
    selectors = []
    for pool in ("english", "arabic"):
        deployment = objects[f"Deployment/babel-{pool}-worker"]
        template = deployment["spec"]["template"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        selectors.append(selector)
        assert selector[POOL_LABEL] == pool
        assert selector.items() <= template["metadata"]["labels"].items()
        assert objects[f"Service/babel-{pool}-workers"]["spec"]["selector"] == selector
        assert objects[f"PodDisruptionBudget/babel-{pool}-worker"]["spec"]["selector"][
            "matchLabels"] == selector
        # the one NetworkPolicy covers every pool's workers
        assert selected.items() <= template["metadata"]["labels"].items()
        container = template["spec"]["containers"][0]
        assert container["startupProbe"]["httpGet"]["path"] == "/startupz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # no pool's Deployment or Service selects the other's pods
    assert selectors[0][POOL_LABEL] != selectors[1][POOL_LABEL]
    arabic = objects["Deployment/babel-arabic-worker"]["spec"]["template"]["spec"]
    assert arabic["initContainers"][0]["args"][-2:] == ["--voices", "arabic"]
    gateway = objects["Deployment/babel-gateway"]["spec"]["template"]["spec"]["containers"][0]
    assert "--discover" not in gateway["args"]
    assert gateway["args"][gateway["args"].index("--pools-file") + 1] == \
        f"{manifests.CONFIG_MOUNT}/{manifests.POOLS_FILE}"


def test_the_pools_file_is_what_the_gateway_reads(tmp_path: Path) -> None:
    cluster = cluster_of(GKE_POOLS_EXAMPLE)
    path = tmp_path / manifests.POOLS_FILE
    path.write_text(manifests.config_map(cluster)["data"][manifests.POOLS_FILE])
    pools, default = read_pools_file(path)
    assert gateway_pools.validate_pools(pools, default) == "english"
    by_name = {pc.name: pc for pc in pools}
    assert by_name["arabic"].model == "canopylabs/orpheus-arabic-saudi"
    assert by_name["arabic"].voices == ["fahad", "sultan", "lulwa", "noura"]
    assert by_name["arabic"].voice_aliases == {"abdullah": "sultan", "aisha": "lulwa"}
    assert by_name["arabic"].discover == "voice/orpheus-arabic-workers"
    assert by_name["english"].discover == "voice/orpheus-english-workers"
    assert by_name["english"].default_voice == "tara"
    # a voice set named in the spec is expanded, its Groq aliases included
    stand_in = cluster_of(POOLS_EXAMPLE)
    data = json.loads(manifests.config_map(stand_in)["data"][manifests.POOLS_FILE])
    arabic = next(p for p in data["pools"] if p["name"] == "arabic")
    assert arabic["voices"] == ["fahad", "sultan", "lulwa", "noura"]
    assert arabic["voice_aliases"]["aisha"] == "lulwa"


def test_a_pool_inherits_the_clusters_blocks_and_replaces_what_it_sets() -> None:
    cluster = cluster_of(GKE_POOLS_EXAMPLE)
    english, arabic = cluster.pools
    assert english.spec["workers"]["maxReplicas"] == 8 and arabic.spec["workers"][
        "maxReplicas"] == 4
    for pool in (english, arabic):  # from spec.workers / spec.engine
        assert pool.spec["workers"]["nodeSelector"] == {
            "cloud.google.com/gke-accelerator": "nvidia-l4"}
        assert pool.spec["engine"]["dtype"] == "bfloat16"
    assert english.spec["autoscaling"]["targetTTFAp95Ms"] == 800
    assert arabic.spec["autoscaling"]["targetTTFAp95Ms"] == 1000
    assert AutoscalingSpec.from_resource(arabic.spec).max_replicas == 4
    worker = manifests.worker_deployment(cluster, arabic)
    assert worker["spec"]["replicas"] == 1
    assert worker["spec"]["template"]["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert manifests.worker_args(cluster, arabic)[2] == "canopylabs/orpheus-arabic-saudi"


def _snapshot() -> SystemSnapshot:
    return SystemSnapshot(
        role="gateway", ready=True, queue_depth=12, window_s=30.0,
        workers=[WorkerState(id="e0", url="http://e0", ready=True, capacity=4, pool="english"),
                 WorkerState(id="a0", url="http://a0", ready=True, capacity=4, pool="arabic"),
                 WorkerState(id="a1", url="http://a1", ready=False, capacity=4, pool="arabic")],
        pools=[PoolState(name="english", ready=True, queue_depth=12, inflight=4, capacity=4,
                         ttfa_p95_ms=2500.0, workers=1, workers_ready=1),
               PoolState(name="arabic", ready=True, queue_depth=0, inflight=0, capacity=4,
                         ttfa_p95_ms=200.0, workers=2, workers_ready=1)])


def test_each_pool_is_observed_on_its_own_signals() -> None:
    signals = signals_by_pool(_snapshot(), 7.0, {"english": 0, "arabic": 0})
    assert (signals["english"].queue_depth, signals["english"].ready_workers,
            signals["english"].ttfa_p95_ms) == (12, 1, 2500.0)
    assert (signals["arabic"].queue_depth, signals["arabic"].ready_workers,
            signals["arabic"].capacity) == (0, 1, 4)
    with pytest.raises(SignalsUnavailable, match="no pool hindi"):
        signals_by_pool(_snapshot(), 7.0, {"english": 0, "hindi": 0})


def test_a_burst_on_one_pool_scales_that_pool_only() -> None:
    cluster = cluster_of(GKE_POOLS_EXAMPLE)
    signals = signals_by_pool(_snapshot(), 100.0, {"english": 1, "arabic": 1})
    decided = {}
    for pool in cluster.pools:
        decision, _state = decide(AutoscalingSpec.from_resource(pool.spec), PolicyState(),
                                  signals[pool.name], pool.replicas)
        decided[pool.name] = decision
    assert decided["english"].desired > cluster.pools[0].replicas
    assert decided["english"].desired <= cluster.pools[0].replicas + 2  # its own maxScaleUpStep
    assert not decided["arabic"].changed


def test_status_has_a_block_per_pool_and_keeps_the_autoscalers_fields() -> None:
    cluster = cluster_of(POOLS_EXAMPLE)
    ready = DeploymentState(replicas=2, ready=2, updated=2, available=2, exists=True)
    idle = DeploymentState(replicas=1, ready=0, updated=1, exists=True)
    observed = Observed(workers=DeploymentState.total([ready, idle]), gateway=ready,
                        pools={"english": ready, "arabic": idle})
    status = compute_status(cluster, observed, 3, [
        {"name": "english", "queueDepth": 5, "ttfaP95Ms": 900.0, "summary": "stale"}])
    english, arabic = status["pools"]
    assert english == {"name": "english", "model": "canopylabs/orpheus-3b-0.1-ft",
                       "deployment": "babel-english-worker", "replicas": 2,
                       "readyReplicas": 2, "ready": True, "summary": "2/2",
                       "queueDepth": 5, "ttfaP95Ms": 900.0}
    assert (arabic["ready"], arabic["summary"]) == (False, "0/1")
    assert status["poolsReady"] == "1/2" and status["workers"]["summary"] == "2/3"
    ready_condition = next(c for c in compute_conditions(cluster, observed)
                           if c["type"] == "Ready")
    assert ready_condition["status"] == "False" and "arabic" in ready_condition["message"]
    single = compute_status(Cluster.from_body(body()), Observed(workers=ready, gateway=ready), 1)
    assert [b["name"] for b in single["pools"]] == ["default"] and single["poolsReady"] == "1/1"
