"""Render the operator chart with Helm's own engine (helm-python-sdk binds Helm's Go SDK)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "orpheus-operator"


def render(values: dict[str, Any] | None = None, name: str = "orpheus",
           namespace: str = "orpheus-system") -> list[dict[str, Any]]:
    """Every object the chart's templates render, in file order (CRDs excluded)."""
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(values or {})
        files = chart.render(values or {}, name=name, namespace=namespace, is_install=True)
    objects = []
    for path in sorted(files):
        if path.endswith(".txt"):
            continue
        objects += [doc for doc in yaml.safe_load_all(files[path]) if doc]
    return objects


def crds() -> list[dict[str, Any]]:
    with helm.Chart.load(CHART) as chart:
        return [doc for f in chart.crds for doc in yaml.safe_load_all(f["data"]) if doc]


def notes(values: dict[str, Any] | None = None) -> str:
    with helm.Chart.load(CHART) as chart:
        files = chart.render(values or {}, name="orpheus", namespace="orpheus-system")
    return next(v for k, v in files.items() if k.endswith("NOTES.txt"))
