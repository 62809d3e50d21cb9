"""The operator's domain model: an `OrpheusCluster` and the names, labels and URLs it implies.

Names and labels are derived from the cluster's name only, so the manifests, the status, the
autoscaler and the tests find a cluster's children without asking the operator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from . import crd
from .defaults import spec_with_defaults

MANAGED_BY = "orpheus-operator"
POOL_LABEL = f"{crd.GROUP}/pool"
SINGLE_POOL = "default"  # the single-model form's one pool (the gateway's name for it too)
# The blocks of a pool; engine, workers and autoscaling start from the cluster's.
INHERITED_BLOCKS = ("engine", "workers", "autoscaling")


@dataclass(frozen=True)
class Pool:
    """One model's workers: `spec.pools[index]` with the cluster's blocks under it, or the
    single-model form (`single`), whose children keep the names and labels they had before
    pools existed (so an upgraded operator adopts a running cluster's workers unchanged)."""

    cluster_name: str
    name: str
    spec: dict[str, Any]  # model, engine, workers, autoscaling, voiceAliases, defaultVoice
    single: bool = False
    index: int | None = None  # position in spec.pools

    @property
    def worker_name(self) -> str:
        base = self.cluster_name if self.single else f"{self.cluster_name}-{self.name}"
        return f"{base}-worker"

    @property
    def service_name(self) -> str:
        base = self.cluster_name if self.single else f"{self.cluster_name}-{self.name}"
        return f"{base}-workers"

    @property
    def selector_labels(self) -> dict[str, str]:
        own = {} if self.single else {POOL_LABEL: self.name}
        return {**selector_labels(self.cluster_name, "worker"), **own}

    @property
    def labels(self) -> dict[str, str]:
        own = {} if self.single else {POOL_LABEL: self.name}
        return {**labels(self.cluster_name, "worker"), **own}

    @property
    def selector(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.selector_labels.items())

    @property
    def replicas(self) -> int:
        return int(self.spec["workers"]["replicas"])

    @property
    def autoscaling(self) -> bool:
        return bool(self.spec["autoscaling"]["enabled"])

    @property
    def model_name(self) -> str | None:
        return self.spec["model"].get("name")


def _pools(name: str, spec: dict[str, Any]) -> list[Pool]:
    if "pools" not in spec:
        gateway = spec["gateway"]
        own = {"model": spec["model"], **{b: spec[b] for b in INHERITED_BLOCKS},
               "voiceAliases": gateway.get("voiceAliases"),
               "defaultVoice": gateway.get("defaultVoice")}
        return [Pool(name, SINGLE_POOL, own, single=True)]
    pools = []
    for index, raw in enumerate(spec["pools"]):
        own = {"model": raw["model"], "voiceAliases": raw.get("voiceAliases"),
               "defaultVoice": raw.get("defaultVoice"),
               **{b: {**spec[b], **(raw.get(b) or {})} for b in INHERITED_BLOCKS}}
        pools.append(Pool(name, raw["name"], own, index=index))
    return pools


@dataclass(frozen=True)
class Cluster:
    """The parts of an `OrpheusCluster` object its children depend on (the spec, defaulted)."""

    name: str
    namespace: str
    uid: str
    spec: dict[str, Any]  # with defaults applied

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Cluster:
        meta = body["metadata"]
        return cls(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"],
                   spec=spec_with_defaults(body.get("spec")))

    @property
    def pools(self) -> list[Pool]:
        """The model pools, in spec order; one (`single`) for the single-model form."""
        return _pools(self.name, self.spec)

    @property
    def single_pool(self) -> bool:
        return "pools" not in self.spec

    @property
    def default_pool(self) -> str:
        return self.spec.get("defaultPool") or self.pools[0].name

    @property
    def worker_replicas(self) -> int:
        """Workers asked for, over all pools. The single-model form's is `spec.workers.replicas`:
        the scale subresource, whoever drives it (`kubectl scale`, KEDA, an HPA, or the
        built-in autoscaler)."""
        return sum(pool.replicas for pool in self.pools)

    @property
    def autoscaling(self) -> bool:
        """Whether the autoscaler drives some pool."""
        return any(pool.autoscaling for pool in self.pools)

    @property
    def auth(self) -> bool:
        return bool(self.spec["gateway"]["auth"]["enabled"])

    @property
    def deprecated_fields(self) -> list[str]:
        """Deprecated spellings the spec still uses (reported in a status condition)."""
        blocks = [("spec.autoscaling", self.spec["autoscaling"])] + [
            (f"spec.pools[{raw['name']}].autoscaling", raw.get("autoscaling") or {})
            for raw in self.spec.get("pools") or []]
        return [f"{where}.{old} (use {new})" for where, raw in blocks
                for old, new in crd.DEPRECATED_FIELDS if old in raw]


def worker_name(cluster_name: str) -> str:
    return f"{cluster_name}-worker"


def worker_service_name(cluster_name: str) -> str:
    return f"{cluster_name}-workers"


def gateway_name(cluster_name: str) -> str:
    return f"{cluster_name}-gateway"


def config_name(cluster_name: str) -> str:
    return f"{cluster_name}-config"


def system_key_secret_name(cluster_name: str) -> str:
    """The operator-owned Secret with the key that may read the gateway's `/v1/system`."""
    return f"{cluster_name}-system-key"


SYSTEM_KEY_FIELD = "key"


def internal_token_secret_name(cluster_name: str) -> str:
    """The operator-owned Secret with the token workers require of their gateways."""
    return f"{cluster_name}-internal-token"


INTERNAL_TOKEN_FIELD = "token"


def limits_per_replica(cluster: Cluster) -> dict[str, int]:
    """`spec.gateway.limits` hold for the whole cluster; each replica enforces its share.

    Every gateway replica keeps its own counters, and the gateway Service spreads a key's
    connections over the replicas; so each replica gets ceil(limit / replicas). A client whose
    requests all land on one replica (one kept-alive connection) gets that share, not the whole
    limit; the sum over replicas never exceeds the limit by more than the rounding (replicas - 1).
    """
    gateway = cluster.spec["gateway"]
    replicas = max(1, int(gateway["replicas"]))
    return {"replicas": replicas,
            **{name: math.ceil(int(gateway["limits"][name]) / replicas)
               for name in ("requestsPerMinute", "concurrentStreams")}}


def selector_labels(cluster_name: str, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "orpheus-tts",
            "app.kubernetes.io/instance": cluster_name,
            "app.kubernetes.io/component": component}


def labels(cluster_name: str, component: str) -> dict[str, str]:
    return {**selector_labels(cluster_name, component),
            "app.kubernetes.io/part-of": "orpheus-tts",
            "app.kubernetes.io/managed-by": MANAGED_BY}


def worker_selector(cluster_name: str) -> str:
    """The worker pods' label selector as a string (the scale subresource's selector)."""
    return ",".join(f"{k}={v}" for k, v in selector_labels(cluster_name, "worker").items())


def gateway_url(cluster: Cluster) -> str:
    """In-cluster URL of the gateway Service."""
    port = cluster.spec["gateway"]["service"]["port"]
    return f"http://{gateway_name(cluster.name)}.{cluster.namespace}.svc:{port}"
