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


class _SharedPlane:
    """One control plane per pytest process, however many places request it.

    Test modules outside tests/k8s import these fixtures (`from tests.k8s.conftest import
    control_plane`), which makes pytest keep a separate session fixture per importing module;
    counting users keeps that to one cluster, stopped when the last user is done."""

    plane: ControlPlane | None = None
    users = 0

    @classmethod
    def acquire(cls, bin_dir: Path) -> ControlPlane:
        if cls.plane is None:
            cls.plane = ControlPlane.start(bin_dir=bin_dir)
        cls.users += 1
        return cls.plane

    @classmethod
    def release(cls) -> None:
        cls.users -= 1
        if cls.users == 0 and cls.plane is not None:
            cls.plane.stop()
            cls.plane = None


@pytest.fixture(scope="session")
def control_plane(k8s_bin_dir: Path) -> Iterator[ControlPlane]:
    """A running etcd + kube-apiserver + controller-manager + scheduler + kwok, shared by the session."""
    plane = _SharedPlane.acquire(k8s_bin_dir)
    try:
        yield plane
    finally:
        _SharedPlane.release()


@pytest.fixture
def namespace(control_plane: ControlPlane) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (without waiting for it to drain)."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    control_plane.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        control_plane.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)
