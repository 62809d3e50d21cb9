"""EndpointSlice discovery against a real kube-apiserver (the control plane of tests/k8s)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

import httpx
import psutil

from orpheus_gateway.core import Gateway
from orpheus_gateway.discovery import EndpointSliceDiscovery
from orpheus_tts import protocol as p
from tests.gateway.conftest import GatewayServer, auth, gateway_config
from tests.k8s.conftest import control_plane, k8s_bin_dir, namespace  # noqa: F401 - fixtures

pytestmark = pytest.mark.k8s

SERVICE = "orpheus-workers"


def endpoint_slice(endpoints: list[tuple[str, str, bool, bool]], name: str = "manual",
                   port: int = 8000) -> dict[str, Any]:
    """A hand-managed slice of (ip, pod, ready, terminating) endpoints for the Service."""
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"{SERVICE}-{name}", "labels": {
            "kubernetes.io/service-name": SERVICE,
            "endpointslice.kubernetes.io/managed-by": "orpheus-tests"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
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


def host_address() -> str:
    """A non-loopback IPv4 address of this machine (the API server refuses loopback endpoints)."""
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family == socket.AF_INET and not addr.address.startswith("127."):
                return addr.address
    raise AssertionError("this test needs a non-loopback IPv4 address on the machine")


def test_gateway_routes_to_discovered_workers_and_not_to_draining_ones(
        control_plane, namespace, fake_server):  # noqa: F811
    ip = host_address()
    a, b = fake_server(host=ip), fake_server(host=ip)
    control_plane.apply({"apiVersion": "v1", "kind": "Service",
                         "metadata": {"name": SERVICE},
                         "spec": {"ports": [{"name": "http", "port": 8000}]}},
                        namespace=namespace)

    def publish(a_ready: bool, b_ready: bool) -> None:
        for srv, name, ready in ((a, "a", a_ready), (b, "b", b_ready)):
            control_plane.apply(endpoint_slice([(ip, f"pod-{name}", ready, not ready)],
                                               name=name, port=srv.port), namespace=namespace)

    publish(True, True)
    config = gateway_config([], discover=f"{namespace}/{SERVICE}")
    discovery = EndpointSliceDiscovery(namespace, SERVICE, api_client=control_plane.api_client(),
                                       watch_timeout_s=2)
    gw = GatewayServer(config, Gateway(config, discovery)).start()
    try:
        assert gw.wait_until(lambda: len(gw.gateway.pool) == 2, timeout=20)
        assert {w.id for w in gw.gateway.pool} == {"pod-a", "pod-b"}
        publish(True, False)  # pod-b drains
        assert gw.wait_until(lambda: len(gw.gateway.pool) == 1, timeout=20)
        with httpx.Client(timeout=10) as client:
            for _ in range(5):
                r = client.post(gw.url + p.STREAM_PATH, json={"text": "x"}, headers=auth())
                assert r.status_code == 200
        assert len(a.stream_requests) == 5 and not b.stream_requests
    finally:
        gw.stop()
