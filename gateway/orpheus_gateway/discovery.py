"""Where the workers are: a static list, or the ready endpoints of a Kubernetes Service.

Kubernetes discovery watches the Service's EndpointSlices (label
`kubernetes.io/service-name`) in a background thread and hands every change to a callback;
nothing is looked up per request. An endpoint that turns not-ready (a draining pod) drops out
of the set, so it gets no new streams; streams already open to it finish.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger("orpheus_gateway.discovery")

WorkerList = list[tuple[str, str | None]]  # (base URL, id)
OnChange = Callable[[WorkerList], None]
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


class StaticDiscovery:
    def __init__(self, urls: list[str]):
        self.urls = urls

    async def start(self, on_change: OnChange) -> None:
        on_change([(u, None) for u in self.urls])

    async def stop(self) -> None:
        return None


def _get(obj: Any, name: str, default: Any = None) -> Any:
    """Field of a kubernetes model object or of a plain dict (watch events can be either)."""
    if obj is None:
        return default
    if isinstance(obj, dict):
        camel = name.split("_")[0] + "".join(p.title() for p in name.split("_")[1:])
        return obj.get(name, obj.get(camel, default))
    return getattr(obj, name, default)


def ready_endpoints(slices: Iterable[Any], port_name: str | None = "http") -> WorkerList:
    """(URL, id) of every ready endpoint in the slices.

    `conditions.ready` unset counts as ready (the API's documented meaning); terminating
    endpoints are not ready. The port is the one named `port_name`, else the slice's first.
    """
    found: dict[str, str | None] = {}
    for sl in slices:
        ports = _get(sl, "ports") or []
        port = next((p for p in ports if _get(p, "name") == port_name), ports[0] if ports else None)
        if port is None or _get(port, "port") is None:
            continue
        number = _get(port, "port")
        for ep in _get(sl, "endpoints") or []:
            cond = _get(ep, "conditions")
            ready = _get(cond, "ready")
            if ready is False or _get(cond, "terminating") is True:
                continue
            ref = _get(ep, "target_ref")
            for addr in (_get(ep, "addresses") or [])[:1]:
                host = f"[{addr}]" if ":" in addr else addr
                found[f"http://{host}:{number}"] = _get(ref, "name") or addr
    return sorted(found.items())


class EndpointSliceDiscovery:
    """Watches `namespace/service`'s EndpointSlices with the official `kubernetes` client."""

    def __init__(self, namespace: str, service: str, port_name: str | None = "http",
                 api_client: Any = None, retry_s: float = 2.0, watch_timeout_s: int = 30):
        self.namespace = namespace
        self.service = service
        self.port_name = port_name
        self._api_client = api_client
        self._retry_s = retry_s
        self.watch_timeout_s = watch_timeout_s  # a watch ends (and is renewed) this often
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch: Any = None

    async def start(self, on_change: OnChange) -> None:
        loop = asyncio.get_running_loop()

        def publish(workers: WorkerList) -> None:
            loop.call_soon_threadsafe(on_change, workers)

        self._thread = threading.Thread(target=self._run, args=(publish,), daemon=True,
                                        name=f"endpointslices-{self.namespace}-{self.service}")
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        watch = self._watch
        if watch is not None:
            watch.stop()
        if self._thread is not None:  # a daemon thread: it leaves when its watch ends
            await asyncio.to_thread(self._thread.join, 1.0)

    def _client(self) -> Any:
        from kubernetes import client, config

        if self._api_client is None:
            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
            self._api_client = client.ApiClient()
        return client.DiscoveryV1Api(self._api_client)

    def _run(self, publish: OnChange) -> None:
        """List, then watch from the list's version; re-watch from the last version seen when a
        watch times out, and list again only after an error (e.g. 410 Gone)."""
        from kubernetes import watch

        selector = f"{SERVICE_NAME_LABEL}={self.service}"
        while not self._stop.is_set():
            try:
                api = self._client()
                listed = api.list_namespaced_endpoint_slice(self.namespace, label_selector=selector)
                slices = {s.metadata.name: s for s in listed.items}
                version = listed.metadata.resource_version
                publish(ready_endpoints(slices.values(), self.port_name))
                while not self._stop.is_set():
                    self._watch = watch.Watch()
                    relist = False
                    for event in self._watch.stream(
                        api.list_namespaced_endpoint_slice, self.namespace,
                        label_selector=selector, resource_version=version,
                        timeout_seconds=self.watch_timeout_s,
                    ):
                        if self._stop.is_set():
                            break
                        if event["type"] not in ("ADDED", "MODIFIED", "DELETED"):
                            relist = True  # ERROR (e.g. 410 Gone: the version is too old)
                            break
                        obj = event["object"]
                        meta = _get(obj, "metadata")
                        version = _get(meta, "resource_version") or version
                        if event["type"] == "DELETED":
                            slices.pop(_get(meta, "name"), None)
                        else:
                            slices[_get(meta, "name")] = obj
                        publish(ready_endpoints(slices.values(), self.port_name))
                    if relist:
                        break
            except Exception as exc:  # noqa: BLE001 - the watch must survive API hiccups
                log.warning("EndpointSlice watch for %s/%s failed: %s; retrying",
                            self.namespace, self.service, exc)
                self._stop.wait(self._retry_s)


def discovery_for(workers: list[str], discover: str | None) -> StaticDiscovery | EndpointSliceDiscovery:
    if discover:
        ns, _, svc = discover.partition("/")
        return EndpointSliceDiscovery(ns, svc)
    return StaticDiscovery(workers)
