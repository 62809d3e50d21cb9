"""EndpointSlice discovery against a real kube-apiserver (the control plane of tests/k8s)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from orpheus_gateway.discovery import EndpointSliceDiscovery
from tests.k8s.conftest import control_plane, k8s_bin_dir, namespace  # noqa: F401 - fixtures

pytestmark = pytest.mark.k8s

SERVICE = "orpheus-workers"


def endpoint_slice(endpoints: list[tuple[str, str, bool, bool]]) -> dict[str, Any]:
    """A hand-managed slice of (ip, pod, ready, terminating) endpoints for the Service."""
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"{SERVICE}-manual", "labels": {
            "kubernetes.io/service-name": SERVICE,
            "endpointslice.kubernetes.io/managed-by": "orpheus-tests"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8000, "protocol": "TCP"}],
        "endpoints": [{"addresses": [ip], "conditions": {"ready": ready,
                                                         "terminating": terminating},
                       "targetRef": {"kind": "Pod", "name": pod}}
                      for ip, pod, ready, terminating in endpoints],
    }


async def wait_for(seen: list, expected: list, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not seen or seen[-1] != expected:
        assert asyncio.get_running_loop().time() < deadline, (seen[-1:] or None, expected)
        await asyncio.sleep(0.05)


async def test_discovery_watches_ready_endpoints(control_plane, namespace):  # noqa: F811
    control_plane.apply({"apiVersion": "v1", "kind": "Service",
                         "metadata": {"name": SERVICE},
                         "spec": {"ports": [{"name": "http", "port": 8000}]}},
                        namespace=namespace)
    control_plane.apply(endpoint_slice([("10.1.0.1", "w-1", True, False),
                                        ("10.1.0.2", "w-2", False, False)]), namespace=namespace)
    seen: list = []
    discovery = EndpointSliceDiscovery(namespace, SERVICE, api_client=control_plane.api_client(),
                                       watch_timeout_s=2)
    await discovery.start(seen.append)
    try:
        await wait_for(seen, [("http://10.1.0.1:8000", "w-1")])
        # w-2 turns ready: it appears without any request asking for it (a watch, not a poll)
        control_plane.apply(endpoint_slice([("10.1.0.1", "w-1", True, False),
                                            ("10.1.0.2", "w-2", True, False)]),
                            namespace=namespace)
        await wait_for(seen, [("http://10.1.0.1:8000", "w-1"), ("http://10.1.0.2:8000", "w-2")])
        # w-1 drains (terminating, not ready): it gets no new streams
        control_plane.apply(endpoint_slice([("10.1.0.1", "w-1", False, True),
                                            ("10.1.0.2", "w-2", True, False)]),
                            namespace=namespace)
        await wait_for(seen, [("http://10.1.0.2:8000", "w-2")])
        control_plane.kubectl("delete", "endpointslice", f"{SERVICE}-manual", "-n", namespace)
        await wait_for(seen, [])
    finally:
        await discovery.stop()
