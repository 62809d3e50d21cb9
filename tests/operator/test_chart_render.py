"""The Helm chart, rendered and linted by Helm's own engine, without a cluster.

Validation against the API server's real schemas (server-side dry run) is in
tests/k8s/test_chart.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import pytest
import yaml

from orpheus_operator import crd, kube, manifests
from orpheus_operator.cluster import Cluster
from tests.operator.helm_render import CHART, crds, notes, render
from tests.operator.test_crd import _draft4

ROOT = Path(__file__).resolve().parents[2]
VARIANTS = {
    "default": {},
    "peering": {"replicaCount": 2},
    "namespaced": {"watchNamespaces": ["tts-a", "tts-b"]},
    "namespaced-peering": {"watchNamespaces": ["tts-a"], "replicaCount": 3},
    "grafana-dashboard": {"grafanaDashboard": {"enabled": True,
                                               "annotations": {"grafana_folder": "Orpheus"}}},
    "with-cluster": {"cluster": {"enabled": True, "name": "voice",
                                 "spec": {"model": {"standIn": True},
                                          "gateway": {"auth": {"enabled": False}}}}},
}


def kinds(objects: list[dict[str, Any]]) -> list[str]:
    return [f"{o['kind']}/{o['metadata']['name']}" for o in objects]


def find(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def operator_args(objects: list[dict[str, Any]]) -> list[str]:
    deployment = find(objects, "Deployment")[0]
    return deployment["spec"]["template"]["spec"]["containers"][0]["args"]


def test_lint_is_clean_in_strict_mode() -> None:
    for values in VARIANTS.values():
        report = helm.lint(CHART, values, strict=True)
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert report["errors"] == [] and problems == [], report


def test_chart_crd_is_the_operator_crd() -> None:
    by_name = {c["metadata"]["name"]: c for c in crds()}
    assert by_name[crd.CRD_NAME] == crd.crd()
    assert {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"} <= set(by_name)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_rendered_rbac_has_no_wildcards(variant: str) -> None:
    objects = render(VARIANTS[variant])
    roles = find(objects, "ClusterRole") + find(objects, "Role")
    assert roles
    for role in roles:
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule.get(key, []), (role["metadata"]["name"], rule)
            assert "nonResourceURLs" not in rule


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_standard_labels_everywhere(variant: str) -> None:
    for obj in render(VARIANTS[variant]):
        labels = obj["metadata"]["labels"]
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance",
                    "app.kubernetes.io/version", "app.kubernetes.io/managed-by"):
            assert key in labels, (obj["kind"], key)


def _grants(rules: list[dict[str, Any]], group: str, resource: str) -> set[str]:
    verbs: set[str] = set()
    for rule in rules:
        if group in rule["apiGroups"] and resource in rule["resources"]:
            verbs |= set(rule["verbs"])
    return verbs


def test_rbac_covers_every_child_the_operator_writes() -> None:
    rules = [r for role in find(render(), "ClusterRole") for r in role["rules"]]
    body = {"metadata": {"name": "x", "namespace": "n", "uid": "u"},
            "spec": {"model": {"standIn": True}, "gateway": {"auth": {"secretRef": {"name": "k"}}}}}
    cluster = Cluster.from_body(body)
    for child in manifests.children(cluster, manifests.Options(service_monitor=True)):
        group = child["apiVersion"].rpartition("/")[0]
        resource = kube.object_path(child).split("/")[-2]
        assert {"create", "patch"} <= _grants(rules, group, resource), child["kind"]
    # What the gateway's Role grants, the operator must hold (RBAC escalation check).
    for rule in manifests.gateway_rbac(cluster)[1]["rules"]:
        for resource in rule["resources"]:
            assert set(rule["verbs"]) <= _grants(rules, rule["apiGroups"][0], resource)
    # Secrets: read (the API keys' existence, the system key) and create (the system key, once);
    # never list, watch, patch or delete.
    assert _grants(rules, "", "secrets") == {"get", "create"}
    assert _grants(rules, crd.GROUP, crd.PLURAL) == {"get", "list", "watch", "patch"}
    assert _grants(rules, crd.GROUP, f"{crd.PLURAL}/status") == {"get", "patch"}
    assert _grants(rules, crd.GROUP, f"{crd.PLURAL}/scale") == {"get", "patch"}


def test_single_replica_is_standalone_and_more_peer() -> None:
    single = render()
    assert "--standalone" in operator_args(single)
    assert not find(single, "ClusterKopfPeering")

    peered = render({"replicaCount": 2})
    args = operator_args(peered)
    assert "--standalone" not in args
    peering = find(peered, "ClusterKopfPeering")[0]["metadata"]["name"]
    assert f"--peering={peering}" in args
    assert "liveness" in " ".join(args)


def test_namespaced_scope_binds_only_those_namespaces() -> None:
    objects = render({"watchNamespaces": ["tts-a", "tts-b"]})
    args = operator_args(objects)
    assert "--namespace=tts-a" in args and "--namespace=tts-b" in args
    bindings = find(objects, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["tts-a", "tts-b"]
    # The namespaced rules are not granted cluster-wide.
    cluster_bound = {b["roleRef"]["name"] for b in find(objects, "ClusterRoleBinding")}
    assert cluster_bound == {"orpheus-orpheus-operator-cluster"}


def test_values_schema_rejects_bad_values() -> None:
    with helm.Chart.load(CHART) as chart:
        for bad in ({"replicaCount": 0}, {"unknownKey": 1}, {"image": {"pullPolicy": "Often"}},
                    {"watchNamespaces": ["Not_A_Namespace"]}, {"cluster": {"enabled": "yes"}}):
            with pytest.raises(helm.HelmError):
                chart.validate_schema(bad)
        chart.validate_schema({"replicaCount": 2, "watchNamespaces": ["a"]})


def _cr_schema() -> dict[str, Any]:
    return _draft4(crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def test_cluster_block_and_examples_validate_against_the_crd_schema() -> None:
    validator = jsonschema.Draft4Validator(_cr_schema())
    rendered = find(render(VARIANTS["with-cluster"]), crd.KIND)
    assert [o["metadata"]["name"] for o in rendered] == ["voice"]
    examples = [d for path in sorted((ROOT / "examples").glob("orpheus-cluster*.yaml"))
                for d in yaml.safe_load_all(path.read_text())
                if d and d["kind"] == crd.KIND]
    # the single-model examples (kind, GKE) and the two with model pools
    assert len(examples) == 4
    assert sum(1 for e in examples if "pools" in e["spec"]) == 2
    for obj in rendered + examples:
        validator.validate(obj)
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**examples[0], "spec": {"engine": {"dtype": "int3"}}})


def test_notes_tell_the_next_step() -> None:
    assert "examples/orpheus-cluster.yaml" in notes()
    assert "get orpheusclusters voice" in notes(VARIANTS["with-cluster"])


def test_deprecated_spellings_get_a_kubernetes_warning_not_a_refusal() -> None:
    objects = render()
    (policy,) = find(objects, "ValidatingAdmissionPolicy")
    (binding,) = find(objects, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Warn"]
    assert policy["spec"]["failurePolicy"] == "Ignore"
    rules = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rules[0]["apiGroups"] == [crd.GROUP] and rules[0]["resources"] == [crd.PLURAL]
    old, new = crd.DEPRECATED_FIELDS[0]
    assert old in policy["spec"]["validations"][0]["expression"]
    assert new in policy["spec"]["validations"][0]["messageExpression"]
