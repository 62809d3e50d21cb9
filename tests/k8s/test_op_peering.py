"""Two operator replicas (the chart with `replicaCount: 2`): kopf peering keeps exactly one
active, and the other takes over when it leaves."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from orpheus_operator import crd
from tests.k8s.controlplane import ControlPlane
from tests.k8s.test_operator import CHART, EXAMPLE, get, rbac_denials, wait_ready, wait_until
from tests.operator.operator_proc import OperatorProcess

RELEASE = RELEASE_NS = "orpheus-ha"
FULLNAME = "orpheus-ha-orpheus-operator"  # the chart's fullname: also its peering's name


@pytest.fixture(scope="module")
def ha_kubeconfig(control_plane: ControlPlane) -> Iterator[Path]:
    control_plane.helm("install", RELEASE, str(CHART), "--namespace", RELEASE_NS,
                       "--create-namespace", "--set", "replicaCount=2", "--wait",
                       "--timeout=120s", timeout=180)
    try:
        yield control_plane.token_kubeconfig(FULLNAME, RELEASE_NS)
    finally:
        control_plane.helm("uninstall", RELEASE, "--namespace", RELEASE_NS, check=False)


def test_one_replica_active_and_the_other_takes_over(
        control_plane: ControlPlane, namespace: str, ha_kubeconfig: Path,
        tmp_path: Path) -> None:
    plane = control_plane
    active = OperatorProcess(ha_kubeconfig, tmp_path / "active.log",
                             extra_args=[f"--peering={FULLNAME}", "--priority=200"])
    standby = OperatorProcess(ha_kubeconfig, tmp_path / "standby.log",
                              extra_args=[f"--peering={FULLNAME}", "--priority=100"])
    try:
        def peers() -> list[int]:
            peering = json.loads(plane.kubectl("get", "clusterkopfpeering", FULLNAME, "-o",
                                               "json").stdout)
            return sorted(p["priority"] for p in (peering.get("status") or {}).values())

        active.start()
        # The standby starts once the active replica is in the peering; alone, it would
        # rightly resume for a moment.
        wait_until("the active replica in the peering", lambda: peers() == [200], 30, active)
        standby.start()

        wait_until("both replicas in the peering", lambda: peers() == [100, 200], 30, standby)
        # A replica starts paused; only the highest priority one resumes.
        wait_until("the active replica to resume", lambda: "Resuming operations after the pause"
                   in active.log(), 30, active)
        plane.kubectl("apply", "-n", namespace, "-f", str(EXAMPLE))
        wait_ready(plane, namespace, active)
        assert "Handler 'reconcile' succeeded" in active.log()
        assert "Handler 'reconcile' succeeded" not in standby.log()
        assert "Resuming operations" not in standby.log()

        active.stop()  # a graceful exit leaves the peering at once
        wait_until("the standby to resume", lambda: "Resuming operations after the pause"
                   in standby.log(), 60, standby)
        plane.kubectl("scale", f"{crd.PLURAL}/demo", "--replicas=3", "-n", namespace)
        wait_until("the former standby to scale the workers",
                   lambda: get(plane, namespace, "deployment", "demo-worker")["spec"]["replicas"]
                   == 3, 60, standby)
        assert not rbac_denials(active.log() + standby.log())
    finally:
        active.stop()
        standby.stop()
