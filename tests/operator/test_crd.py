"""The CRD: one definition, its generated copies, defaults and the subresources' paths."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from orpheus_operator import crd
from orpheus_operator.defaults import apply_defaults, spec_with_defaults


def test_package_and_chart_copies_equal_the_definition() -> None:
    expected = crd.render_yaml()
    for path in (crd.PACKAGE_CRD_PATH, crd.CHART_CRD_PATH):
        assert path.read_text() == expected, (
            f"{path} is stale: run `python -m orpheus_operator.crd --write`")
    assert yaml.safe_load(expected) == crd.crd()


def _walk(schema: dict[str, Any], path: str = ""):
    yield path, schema
    for key, sub in schema.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{key}")
    if isinstance(schema.get("items"), dict):
        yield from _walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _walk(schema["additionalProperties"], f"{path}{{}}")


def _version() -> dict[str, Any]:
    return crd.crd()["spec"]["versions"][0]


def test_schema_is_structural() -> None:
    """Every node has a type (or is int-or-string / preserves unknown fields), as the API server
    demands of structural schemas."""
    root = _version()["schema"]["openAPIV3Schema"]
    for path, node in _walk(root):
        if node.get("x-kubernetes-int-or-string"):
            continue
        assert "type" in node, f"{path} has no type"
        if node["type"] == "object" and not node.get("x-kubernetes-preserve-unknown-fields") \
                and path not in (".metadata",):
            assert "properties" in node or "additionalProperties" in node, path


def test_defaults_validate_against_their_own_schema() -> None:
    import jsonschema

    root = _version()["schema"]["openAPIV3Schema"]
    for path, node in _walk(root):
        if "default" in node:
            validator = jsonschema.Draft4Validator(_draft4(node))
            errors = list(validator.iter_errors(apply_defaults(node, node["default"])))
            assert not errors, (path, errors)


def _draft4(schema: Any) -> Any:
    """OpenAPI v3 subset -> JSON Schema draft 4 (drops the Kubernetes extensions)."""
    if isinstance(schema, dict):
        return {k: _draft4(v) for k, v in schema.items()
                if not k.startswith("x-kubernetes") and k not in ("format",)}
    if isinstance(schema, list):
        return [_draft4(v) for v in schema]
    return schema


def test_scale_subresource_and_printer_columns_point_at_schema_fields() -> None:
    version = _version()
    root = version["schema"]["openAPIV3Schema"]
    paths = {p for p, _ in _walk(root)}
    scale = version["subresources"]["scale"]
    assert scale == {"specReplicasPath": ".spec.workers.replicas",
                     "statusReplicasPath": ".status.workers.replicas",
                     "labelSelectorPath": ".status.workers.selector"}
    for field in scale.values():
        assert field in paths
    assert "status" in version["subresources"]
    names = [c["name"] for c in version["additionalPrinterColumns"]]
    assert names == ["Ready", "Workers", "Endpoint", "TTFA p95", "Queue", "Pools", "Age"]
    for column in version["additionalPrinterColumns"]:
        simple = column["jsonPath"].split("[")[0]
        assert simple in paths or simple.startswith(".metadata."), column


def test_minimal_spec_gets_every_default() -> None:
    spec = spec_with_defaults({"model": {"name": "org/model"}})
    assert spec["workers"]["resources"] == {"limits": {"nvidia.com/gpu": 1}}
    assert spec["workers"]["replicas"] == 1
    assert spec["gateway"]["service"] == {"type": "ClusterIP", "port": 8000}
    assert spec["gateway"]["auth"]["enabled"] is True
    assert spec["autoscaling"]["enabled"] is False
    assert spec["model"]["snac"] == crd.DEFAULT_SNAC
    assert spec["model"]["cache"]["type"] == "emptyDir"
    assert spec["model"]["standIn"] is False
    assert "voices" not in spec["model"]  # the worker's own default set


def test_defaults_never_override_what_is_written() -> None:
    spec = spec_with_defaults({
        "workers": {"resources": {"requests": {"cpu": "500m"}}, "replicas": 0},
        "gateway": {"auth": {"secretRef": {"name": "keys"}}},
    })
    assert spec["workers"]["resources"] == {"requests": {"cpu": "500m"}}
    assert spec["workers"]["replicas"] == 0
    assert spec["gateway"]["auth"]["secretRef"] == {"name": "keys", "key": "keys"}


@pytest.mark.parametrize("rule_owner, needle", [
    ("workers", "minReplicas"), ("model", "standIn"), ("gateway.auth", "secretRef"),
])
def test_cel_rules_are_declared(rule_owner: str, needle: str) -> None:
    node = _version()["schema"]["openAPIV3Schema"]["properties"]["spec"]
    for part in rule_owner.split("."):
        node = node["properties"][part]
    rules = node["x-kubernetes-validations"]
    assert any(needle in r["rule"] and r["message"] for r in rules)
