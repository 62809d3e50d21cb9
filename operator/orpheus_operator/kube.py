"""Kubernetes API access for the operator: configuration and idempotent server-side apply.

Children are written with server-side apply under one field manager and `force`, so the
operator owns exactly the fields its manifests set: re-applying an unchanged manifest is a
no-op on the server (no new resourceVersion), and a field someone else changed is put back.
"""

from __future__ import annotations

import threading
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

FIELD_MANAGER = "orpheus-operator"

# kind -> plural, for every kind the operator writes.
_PLURALS = {
    "ConfigMap": "configmaps",
    "Service": "services",
    "ServiceAccount": "serviceaccounts",
    "Deployment": "deployments",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "Role": "roles",
    "RoleBinding": "rolebindings",
    "ServiceMonitor": "servicemonitors",
    "NetworkPolicy": "networkpolicies",
}


class CallCounter:
    """Counts the API requests `api` makes, per thread (a reconcile pass runs in one thread,
    so its count is exact while other threads use the same client)."""

    def __init__(self, api: client.ApiClient):
        self._local = threading.local()
        call_api = api.call_api

        def counted(*args: Any, **kwargs: Any) -> Any:
            self._local.count = self.count + 1
            return call_api(*args, **kwargs)

        api.call_api = counted  # type: ignore[method-assign]

    @property
    def count(self) -> int:
        return getattr(self._local, "count", 0)


def load_config(kubeconfig: str | None = None) -> client.ApiClient:
    """An API client: in-cluster when running in a pod, else the kubeconfig."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    return client.ApiClient(configuration)


def object_path(manifest: dict[str, Any]) -> str:
    api_version, kind = manifest["apiVersion"], manifest["kind"]
    meta = manifest["metadata"]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    return f"{base}/namespaces/{meta['namespace']}/{_PLURALS[kind]}/{meta['name']}"


def request(api: client.ApiClient, method: str, path: str, body: Any = None,
            content_type: str = "application/json",
            query: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """One API request; returns the decoded JSON object, raises ApiException on errors."""
    serialized = api.param_serialize(
        method=method, resource_path=path, query_params=query or [],
        header_params={"Content-Type": content_type, "Accept": "application/json"},
        body=body, auth_settings=["BearerToken"])
    response = api.call_api(*serialized)
    response.read()
    return api.response_deserialize(response, {"2XX": "object"}).data


def apply(api: client.ApiClient, manifest: dict[str, Any]) -> dict[str, Any]:
    """Server-side apply `manifest` (create or converge); returns the live object."""
    return request(api, "PATCH", object_path(manifest), body=manifest,
                   content_type="application/apply-patch+yaml",
                   query=[("fieldManager", FIELD_MANAGER), ("force", "true")])


def get(api: client.ApiClient, manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The live object for `manifest`'s kind/namespace/name, or None."""
    try:
        return request(api, "GET", object_path(manifest))
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def api_group_served(api: client.ApiClient, group_version: str, kind: str) -> bool:
    """Whether the API server serves `kind` in `group_version` (discovery, no RBAC needed)."""
    try:
        listing = request(api, "GET", f"/apis/{group_version}")
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return any(r.get("kind") == kind for r in listing.get("resources", []))


def plain(value: Any) -> Any:
    """A kopf body (or any mapping/sequence view of one) as plain dicts and lists."""
    if isinstance(value, dict) or hasattr(value, "items"):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
