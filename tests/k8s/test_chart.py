"""The chart, the examples and the operator's own manifests, validated by the real API server.

Every object is sent with `kubectl apply --dry-run=server`, so the API server checks it against
its own schemas (and the CRD's structural schema and CEL rules) without storing it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orpheus_operator import crd, manifests
from orpheus_operator.cluster import Cluster
from tests.k8s.controlplane import ControlPlane
from tests.operator.helm_render import CHART, render
from tests.operator.test_chart_render import VARIANTS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def crds_installed(control_plane: ControlPlane) -> None:
    for path in sorted((CHART / "crds").glob("*.yaml")):
        control_plane.apply(path.read_text())
    control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                          f"crd/{crd.CRD_NAME}", "crd/clusterkopfpeerings.kopf.dev",
                          "crd/kopfpeerings.kopf.dev", timeout=90)


def dry_run(plane: ControlPlane, objects: list[dict[str, Any]]) -> str:
    # Every namespaced object names its namespace; cluster-scoped ones have none.
    result = plane.kubectl("apply", "--dry-run=server", "--server-side",
                           "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                        "items": objects}), check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_helm_lint_with_the_built_helm(control_plane: ControlPlane) -> None:
    result = control_plane.helm("lint", str(CHART), "--strict", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_rendered_object_passes_server_validation(
        control_plane: ControlPlane, namespace: str, crds_installed: None, variant: str) -> None:
    values = dict(VARIANTS[variant])
    if "watchNamespaces" in values:
        values["watchNamespaces"] = [namespace]
    objects = render(values, name=f"v-{variant}", namespace=namespace)
    assert objects
    out = dry_run(control_plane, objects)
    assert out.count("serverside-applied (server dry run)") == len(objects), out


def test_examples_pass_server_validation(control_plane: ControlPlane, namespace: str,
                                         crds_installed: None) -> None:
    for name in ("orpheus-cluster.yaml", "orpheus-cluster-gke.yaml", "orpheus-cluster-hpa.yaml",
                 "orpheus-cluster-pools.yaml", "orpheus-cluster-pools-gke.yaml"):
        result = control_plane.kubectl("apply", "--dry-run=server", "-n", namespace,
                                       "-f", str(ROOT / "examples" / name), check=False)
        assert result.returncode == 0, f"{name}: {result.stderr}"


@pytest.mark.parametrize("example", ["orpheus-cluster.yaml", "orpheus-cluster-gke.yaml",
                                     "orpheus-cluster-pools-gke.yaml"])
def test_operator_children_pass_server_validation(control_plane: ControlPlane, namespace: str,
                                                  crds_installed: None, example: str) -> None:
    import yaml

    docs = yaml.safe_load_all((ROOT / "examples" / example).read_text())
    body = next(d for d in docs if d and d["kind"] == crd.KIND)
    body["metadata"].update(namespace=namespace, uid="00000000-0000-0000-0000-000000000001")
    cluster = Cluster.from_body(body)
    objects = [*manifests.children(cluster), manifests.system_key_secret(cluster, "k3y")]
    out = dry_run(control_plane, objects)
    assert out.count("serverside-applied (server dry run)") == len(objects), out
