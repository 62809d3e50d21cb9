"""Conditions and status fields computed from what the operator observed."""

from __future__ import annotations

from orpheus_operator.cluster import Cluster
from orpheus_operator.status import (
    DeploymentState,
    Observed,
    Problem,
    compute_conditions,
    compute_status,
    get_condition,
    merge_conditions,
)
from tests.operator.test_manifests import body


def conditions_of(observed: Observed, spec: dict | None = None) -> dict[str, dict[str, str]]:
    cluster = Cluster.from_body(body(spec))
    return {c["type"]: c for c in compute_conditions(cluster, observed)}


def ready(n: int) -> DeploymentState:
    return DeploymentState(replicas=n, ready=n, updated=n, available=n, exists=True)


def test_all_ready() -> None:
    conds = conditions_of(Observed(workers=ready(2), gateway=ready(1)))
    assert conds["Ready"]["status"] == "True"
    assert conds["Progressing"]["status"] == "False"
    assert conds["Degraded"]["status"] == "False"
    assert conds["ScalingActive"] == {
        "type": "ScalingActive", "status": "False", "reason": "AutoscalingDisabled",
        "message": "spec.workers.replicas (the scale subresource) sets the worker count."}


def test_waiting_for_workers_is_progressing_not_ready() -> None:
    workers = DeploymentState(replicas=2, ready=0, updated=2, exists=True)
    conds = conditions_of(Observed(workers=workers, gateway=ready(1)))
    assert conds["Ready"]["status"] == "False"
    assert conds["Ready"]["reason"] == "NoWorkerReady"
    assert conds["Progressing"]["reason"] == "WaitingForPods"


def test_rollout_in_progress() -> None:
    workers = DeploymentState(replicas=3, ready=3, updated=1, exists=True)
    conds = conditions_of(Observed(workers=workers, gateway=ready(1)))
    assert conds["Progressing"]["reason"] == "RollingOut"
    assert conds["Ready"]["status"] == "True"  # still serving on the old pods


def test_problem_means_degraded_and_not_ready() -> None:
    problem = Problem("AuthSecretMissing", "Secret voice/api-keys ... does not exist")
    conds = conditions_of(Observed(workers=ready(1), gateway=ready(1), problems=[problem]))
    assert conds["Degraded"]["status"] == "True"
    assert conds["Degraded"]["reason"] == "AuthSecretMissing"
    assert "does not exist" in conds["Degraded"]["message"]
    assert conds["Ready"]["status"] == "False"


def test_autoscaler_owns_scaling_active_when_enabled() -> None:
    spec = {"model": {"standIn": True}, "gateway": {"auth": {"enabled": False}},
            "autoscaling": {"enabled": True}}
    assert "ScalingActive" not in conditions_of(Observed(workers=ready(1), gateway=ready(1)),
                                                spec)
    off = conditions_of(Observed(workers=ready(1), gateway=ready(1)),
                        {**spec, "autoscaling": {"enabled": False}})
    assert off["ScalingActive"]["reason"] == "AutoscalingDisabled"


def test_the_deprecated_spelling_is_reported() -> None:
    spec = {"model": {"standIn": True}, "gateway": {"auth": {"enabled": False}},
            "autoscaling": {"enabled": True, "targetTTFBp95Ms": 700}}
    old = conditions_of(Observed(workers=ready(1), gateway=ready(1)), spec)
    assert old["Deprecated"]["status"] == "True"
    assert "targetTTFBp95Ms (use targetTTFAp95Ms)" in old["Deprecated"]["message"]
    assert old["Ready"]["status"] == "True"  # a warning, not a failure
    new = conditions_of(Observed(workers=ready(1), gateway=ready(1)),
                        {**spec, "autoscaling": {"enabled": True, "targetTTFAp95Ms": 700}})
    assert new["Deprecated"]["status"] == "False"


def test_scaled_to_zero_is_not_ready_and_says_so() -> None:
    conds = conditions_of(Observed(workers=DeploymentState(replicas=0, exists=True),
                                   gateway=ready(1)))
    assert (conds["Ready"]["status"], conds["Ready"]["reason"]) == ("False", "ScaledToZero")


def test_status_fields_feed_the_scale_subresource() -> None:
    cluster = Cluster.from_body(body())
    status = compute_status(cluster, Observed(workers=ready(3), gateway=ready(1)), generation=4)
    assert status["observedGeneration"] == 4
    assert status["workers"] == {
        "replicas": 3, "readyReplicas": 3, "summary": "3/3",
        "selector": "app.kubernetes.io/name=orpheus-tts,app.kubernetes.io/instance=tts,"
                    "app.kubernetes.io/component=worker"}
    assert status["gateway"] == {
        "ready": True, "readyReplicas": 1, "endpoint": "http://tts-gateway.voice.svc:8000",
        "limitsPerReplica": {"replicas": 1, "requestsPerMinute": 600, "concurrentStreams": 16}}


def test_transition_time_moves_only_when_status_changes() -> None:
    first = merge_conditions([], [{"type": "Ready", "status": "False", "reason": "A",
                                   "message": "a"}], generation=1, now="t1")
    same = merge_conditions(first, [{"type": "Ready", "status": "False", "reason": "B",
                                     "message": "b"}], generation=1, now="t2")
    assert get_condition({"conditions": same}, "Ready")["lastTransitionTime"] == "t1"
    assert get_condition({"conditions": same}, "Ready")["reason"] == "B"
    flipped = merge_conditions(same, [{"type": "Ready", "status": "True", "reason": "C",
                                       "message": "c"}], generation=2, now="t3")
    cond = get_condition({"conditions": flipped}, "Ready")
    assert cond["lastTransitionTime"] == "t3" and cond["observedGeneration"] == 2
    again = merge_conditions(flipped, [{"type": "Ready", "status": "True", "reason": "C",
                                        "message": "c"}], generation=2, now="t4")
    assert again == flipped  # nothing changed: nothing to write
