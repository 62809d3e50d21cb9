"""The end-to-end suite: our images on a real node (tests/k8s/realnode.py), installed the way a
user does it. Every test here is marked `node`; the suite needs root, the node tools
(`make k8s-node`) and the images (`make images`), and fails (never skips) without them."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.k8s.controlplane import ToolsMissing, find_bin_dir
from tests.k8s.realnode import NodeCluster, find_node_bin_dir, leftovers

_HERE = Path(__file__).parent
ROOT = _HERE.parent.parent
IMAGES = ("gateway", "operator", "worker-cpu")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(pytest.mark.node)


def images_dir() -> Path:
    return Path.home() / ".cache" / "orpheus-tts" / "images"


def export_images() -> list[Path]:
    """Builds (cached: seconds) and exports the images the cluster runs, as docker archives."""
    result = subprocess.run(["bash", str(ROOT / "scripts" / "build-images.sh"), "--export", str(images_dir()),
                             *IMAGES], capture_output=True, text=True, timeout=3600, cwd=ROOT)
    if result.returncode != 0:
        pytest.fail(f"`scripts/build-images.sh` failed (`make images`):\n{result.stderr[-3000:]}", pytrace=False)
    return [images_dir() / f"{name}.tar" for name in IMAGES]


@pytest.fixture(scope="package")
def node_cluster() -> Iterator[NodeCluster]:
    """The control plane plus one real node, with our images imported; stopped cleanly after the
    last e2e test (package scope: in `make test` the node does not idle through the other suites)."""
    try:
        bin_dir, node_bin_dir = find_bin_dir(), find_node_bin_dir()
    except ToolsMissing as exc:
        pytest.fail(f"{exc}\nThe e2e suite needs `make k8s-tools k8s-node images`.", pytrace=False)
    archives = export_images()
    node = NodeCluster.start_node(bin_dir=bin_dir, node_bin_dir=node_bin_dir)
    work_dir = node.work_dir
    try:
        for archive in archives:
            node.import_image(archive)
        yield node
    finally:
        node.stop()
    left = leftovers((work_dir,))
    assert left.empty(), f"the node left things behind: {left}"
