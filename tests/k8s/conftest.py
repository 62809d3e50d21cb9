"""Fixtures for tests against the real control plane in tests/k8s/controlplane.py.

Every test under tests/k8s/ is marked `k8s`. The control plane is started once per session;
tests share it, so each test works in its own namespace (the `namespace` fixture)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.k8s.controlplane import ControlPlane, ToolsMissing, find_bin_dir

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(pytest.mark.k8s)


@pytest.fixture(scope="session")
def k8s_bin_dir() -> Path:
    """The built binaries (kubectl, helm, ...). Fails, never skips, when they are missing."""
    try:
        return find_bin_dir()
    except ToolsMissing as exc:
        message = str(exc)
    pytest.fail(f"{message}\nThe k8s tests need the control plane built first: `make k8s-tools`.", pytrace=False)


@pytest.fixture(scope="session")
def control_plane(k8s_bin_dir: Path) -> Iterator[ControlPlane]:
    """A running etcd + kube-apiserver + controller-manager + scheduler + kwok, shared by the session."""
    plane = ControlPlane.start(bin_dir=k8s_bin_dir)
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture
def namespace(control_plane: ControlPlane) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (without waiting for it to drain)."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    control_plane.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        control_plane.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)
