"""Structural-schema defaulting, as the API server does it, for the operator's own use.

The API server defaults every object it stores, but the operator must not depend on that (an
object written before a default was added, or a unit test's bare spec): it applies the same
defaults from the same schema (`crd.spec_schema()`) before building manifests.
"""

from __future__ import annotations

import copy
from typing import Any

from . import crd


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Return a copy of `value` with the schema's defaults filled in, top-down."""
    value = copy.deepcopy(value)
    _fill(schema, value)
    return value


def _fill(schema: dict[str, Any], value: Any) -> None:
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key, sub in properties.items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
        for key, item in value.items():
            if key in properties:
                _fill(properties[key], item)
            elif isinstance(schema.get("additionalProperties"), dict):
                _fill(schema["additionalProperties"], item)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _fill(schema["items"], item)


_SPEC_SCHEMA = crd.spec_schema()


def spec_with_defaults(spec: dict[str, Any] | None) -> dict[str, Any]:
    """An `OrpheusCluster` spec with every default the CRD declares."""
    return apply_defaults(_SPEC_SCHEMA, spec or {})
