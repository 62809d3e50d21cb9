"""Pure functions from an `OrpheusCluster`'s spec to the Kubernetes objects that run it.

No API calls and nothing read back from status: `children(cluster, options)` returns every
child object, fully specified, and the reconciler applies them. The worker count is
`spec.workers.replicas`, the scale subresource, whoever drives it. The inputs that are not
spec are the system key and the internal token (random, made once): `system_key_secret` and
`internal_token_secret` take them as arguments.

Pods run as the images' non-root user with a read-only root filesystem, no capabilities and the
runtime's default seccomp profile (the Kubernetes "restricted" Pod Security Standard); what they
write goes to volumes: `/tmp` (an emptyDir, also HOME), the model cache (group-writable through
`fsGroup`, so a root-owned PVC works) and `/dev/shm`. Workers accept connections from their
cluster's gateway pods only (a NetworkPolicy) and requests carrying the internal token only.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from . import crd
from .cluster import (
    MANAGED_BY,
    INTERNAL_TOKEN_FIELD,
    SYSTEM_KEY_FIELD,
    Cluster,
    Pool,
    config_name,
    gateway_name,
    internal_token_secret_name,
    labels,
    limits_per_replica,
    selector_labels,
    system_key_secret_name,
    worker_name,
)

Manifest = dict[str, Any]

WORKER_PORT = 8100
GATEWAY_PORT = 8000
PRESTOP_SECONDS = 5
GATEWAY_DRAIN_SECONDS = 30
GRACE_MARGIN_SECONDS = 5
STARTUP_PROBE_PERIOD = 10
CONFIG_MOUNT = "/etc/orpheus/config"
KEYS_MOUNT = "/etc/orpheus/keys"
SYSTEM_KEY_MOUNT = "/etc/orpheus/system-key"
STAND_IN_DIR = "standin"
CONFIG_HASH_ANNOTATION = f"{crd.GROUP}/config-hash"
RUN_AS = 10001  # the user the images are built with (images/*.Dockerfile)
TMP_MOUNT = "/tmp"
INTERNAL_TOKEN_ENV = "ORPHEUS_INTERNAL_TOKEN"


@dataclass(frozen=True)
class Options:
    """What the operator learned from the cluster, beyond the spec."""

    service_monitor: bool = False  # the monitoring.coreos.com ServiceMonitor CRD exists


def _meta(cluster: Cluster, name: str, component: str,
          annotations: dict[str, str] | None = None, pool: Pool | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": cluster.namespace,
        "labels": pool.labels if pool is not None else labels(cluster.name, component),
        "ownerReferences": [{
            "apiVersion": crd.API_VERSION,
            "kind": crd.KIND,
            "name": cluster.name,
            "uid": cluster.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }],
    }
    if annotations:
        meta["annotations"] = annotations
    return meta


# --- the ConfigMap -----------------------------------------------------------------------------
VOICE_ALIASES_FILE = "voice-aliases.json"
POOLS_FILE = "pools.json"


def _voice_set(pool: Pool) -> tuple[list[str], dict[str, str]]:
    """The voices a pool's workers serve and the aliases of its voice set, as far as the spec
    says: `model.voices` lists names, or names one built-in set (`[arabic]`), or is empty (the
    workers report theirs)."""
    from orpheus_worker.voices import builtin_sets, load_voice_set

    voices = [v.lower() for v in pool.spec["model"].get("voices") or []]
    if len(voices) == 1 and voices[0] in builtin_sets():
        voice_set = load_voice_set(voices[0])
        return list(voice_set.voices), dict(voice_set.aliases)
    return voices, {}


def pools_document(cluster: Cluster) -> dict[str, Any]:
    """The gateway's `--pools-file` (orpheus_gateway.config.read_pools_file): each pool's
    model, voices and aliases, and its workers' Service to discover."""
    pools = []
    for pool in cluster.pools:
        voices, aliases = _voice_set(pool)
        entry: dict[str, Any] = {
            "name": pool.name, "model": pool.model_name,
            "discover": f"{cluster.namespace}/{pool.service_name}"}
        if voices:
            entry["voices"] = voices
        aliases.update({k.lower(): v for k, v in (pool.spec.get("voiceAliases") or {}).items()})
        if aliases:
            entry["voice_aliases"] = aliases
        if pool.spec.get("defaultVoice"):
            entry["default_voice"] = pool.spec["defaultVoice"]
        pools.append(entry)
    return {"default_pool": cluster.default_pool, "pools": pools}


def config_map(cluster: Cluster) -> Manifest:
    """Files the pods read: the gateway's voice alias map (`--voice-aliases`), or with pools
    the gateway's pools file (`--pools-file`)."""
    if cluster.single_pool:
        aliases = cluster.spec["gateway"].get("voiceAliases") or {}
        data = {VOICE_ALIASES_FILE: json.dumps(aliases, indent=2, sort_keys=True) + "\n"}
    else:
        data = {POOLS_FILE: json.dumps(pools_document(cluster), indent=2, sort_keys=True) + "\n"}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(cluster, config_name(cluster.name), "config"),
        "data": data,
    }


def config_hash(cluster: Cluster) -> str:
    """Changes whenever the ConfigMap does, so pods roll when their configuration changes."""
    data = json.dumps(config_map(cluster)["data"], sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()[:16]


# --- pod template pieces -----------------------------------------------------------------------
def _scrape_annotations(port: int) -> dict[str, str]:
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(port),
            "prometheus.io/path": "/metrics"}


def _downward_env() -> list[dict[str, Any]]:
    return [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]


def _probes(startup_seconds: int, *, startup: str, ready: str, live: str) -> dict[str, Any]:
    return {
        "startupProbe": {"httpGet": {"path": startup, "port": "http"},
                         "periodSeconds": STARTUP_PROBE_PERIOD,
                         "failureThreshold": math.ceil(startup_seconds / STARTUP_PROBE_PERIOD)},
        "readinessProbe": {"httpGet": {"path": ready, "port": "http"},
                           "periodSeconds": 5, "failureThreshold": 2},
        "livenessProbe": {"httpGet": {"path": live, "port": "http"},
                          "periodSeconds": 10, "failureThreshold": 3, "timeoutSeconds": 5},
    }


# The worker's endpoints (orpheus_worker.app): startup passes once vLLM and SNAC are loaded (so
# `startupSeconds` bounds the load and a hung one is restarted), liveness fails when the engine
# died, readiness is admission (loading, draining or full: not ready).
WORKER_PROBES = {"startup": "/startupz", "ready": "/readyz", "live": "/livez"}
# The gateway's readiness is the gateway's own: it holds requests while no worker is ready.
GATEWAY_PROBES = {"startup": "/healthz", "ready": "/readyz", "live": "/healthz"}
GATEWAY_STARTUP_SECONDS = 60


def _pre_stop() -> dict[str, Any]:
    # Endpoints drop the pod while it sleeps, then SIGTERM starts the process's own drain.
    return {"preStop": {"exec": {"command": ["sleep", str(PRESTOP_SECONDS)]}}}


def termination_grace_seconds(drain_seconds: int) -> int:
    return PRESTOP_SECONDS + drain_seconds + GRACE_MARGIN_SECONDS


def _config_volume(cluster: Cluster) -> dict[str, Any]:
    return {"name": "config", "configMap": {"name": config_name(cluster.name)}}


def pod_security_context() -> dict[str, Any]:
    """Non-root, and the volumes' group is the pod's (a root-owned cache PVC becomes writable)."""
    return {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS, "fsGroup": RUN_AS,
            "fsGroupChangePolicy": "OnRootMismatch",
            "seccompProfile": {"type": "RuntimeDefault"}}


def container_security_context() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}


def _tmp_volume(size: str) -> dict[str, Any]:
    return {"name": "tmp", "emptyDir": {"sizeLimit": size}}


_TMP_MOUNT = {"name": "tmp", "mountPath": TMP_MOUNT}
# Libraries write caches under HOME / XDG_CACHE_HOME (vLLM, torch, triton): point them at /tmp.
_TMP_ENV = [{"name": "HOME", "value": TMP_MOUNT},
            {"name": "XDG_CACHE_HOME", "value": f"{TMP_MOUNT}/cache"}]


def _internal_token_env(cluster: Cluster) -> dict[str, Any]:
    return {"name": INTERNAL_TOKEN_ENV, "valueFrom": {"secretKeyRef": {
        "name": internal_token_secret_name(cluster.name), "key": INTERNAL_TOKEN_FIELD}}}


# --- workers -----------------------------------------------------------------------------------
def _pool(cluster: Cluster, pool: Pool | None) -> Pool:
    return pool if pool is not None else cluster.pools[0]


def model_paths(cluster: Cluster, pool: Pool | None = None) -> tuple[str, str]:
    """(`--model`, `--snac`) for the worker."""
    model = _pool(cluster, pool).spec["model"]
    if model["standIn"]:
        root = f"{model['cache']['mountPath']}/{STAND_IN_DIR}"
        return f"{root}/llm", f"{root}/snac"
    return model["name"], model["snac"]


def worker_args(cluster: Cluster, pool: Pool | None = None) -> list[str]:
    pool = _pool(cluster, pool)
    spec, engine = pool.spec, pool.spec["engine"]
    model_path, snac_path = model_paths(cluster, pool)
    args = [
        "worker",
        "--model", model_path,
        "--snac", snac_path,
        "--host", "0.0.0.0",
        "--port", str(WORKER_PORT),
        "--worker-id", "$(POD_NAME)",
        "--max-num-seqs", str(engine["maxNumSeqs"]),
        "--gpu-memory-utilization", str(engine["gpuMemoryUtilization"]),
        "--max-model-len", str(engine["maxModelLen"]),
        "--dtype", engine["dtype"],
        "--drain-seconds", str(spec["workers"]["drainSeconds"]),
    ]
    if spec["model"].get("voices"):
        args += ["--voices", ",".join(spec["model"]["voices"])]
    if spec["model"]["standIn"]:
        args += ["--constrain-to-audio-tokens"]  # random weights would rarely emit audio
    extra = dict(engine.get("extraArgs") or {})
    if spec["model"].get("revision") and not spec["model"]["standIn"]:
        extra.setdefault("revision", spec["model"]["revision"])
    for key in sorted(extra):
        args += ["--engine-arg", f"{key}={extra[key]}"]
    return args


def _model_volume(pool: Pool) -> dict[str, Any]:
    cache = pool.spec["model"]["cache"]
    if cache["type"] == "pvc":
        return {"name": "model-cache", "persistentVolumeClaim": {"claimName": cache["claimName"]}}
    return {"name": "model-cache", "emptyDir": {"sizeLimit": cache["sizeLimit"]}}


def _stand_in_args(pool: Pool, directory: str) -> list[str]:
    """`make-tiny-model`: a voice set's stand-in (`voices: [arabic]`: Arabic script in the
    tokenizer); the English one is the default checkpoint."""
    from orpheus_worker.voices import builtin_sets

    voices = pool.spec["model"].get("voices") or []
    if len(voices) == 1 and voices[0] != "english" and voices[0] in builtin_sets():
        return ["make-tiny-model", directory, "--voices", voices[0]]
    return ["make-tiny-model", directory]


def worker_deployment(cluster: Cluster, pool: Pool | None = None) -> Manifest:
    pool = _pool(cluster, pool)
    spec, workers = pool.spec, pool.spec["workers"]
    cache_mount = spec["model"]["cache"]["mountPath"]
    mounts = [
        {"name": "dshm", "mountPath": "/dev/shm"},
        {"name": "model-cache", "mountPath": cache_mount},
        _TMP_MOUNT,
    ]
    env = _downward_env() + _TMP_ENV + [
        {"name": "HF_HOME", "value": f"{cache_mount}/hf"},
        _internal_token_env(cluster),
    ] + list(workers.get("env") or [])
    container: dict[str, Any] = {
        "name": "worker",
        "image": workers["image"],
        "imagePullPolicy": workers["imagePullPolicy"],
        "command": ["orpheus-tts"],
        "args": worker_args(cluster, pool),
        "ports": [{"name": "http", "containerPort": WORKER_PORT, "protocol": "TCP"}],
        "env": env,
        "resources": workers["resources"],
        "volumeMounts": mounts,
        "lifecycle": _pre_stop(),
        "securityContext": container_security_context(),
        **_probes(workers["startupSeconds"], **WORKER_PROBES),
    }
    pod_spec: dict[str, Any] = {
        "terminationGracePeriodSeconds": termination_grace_seconds(workers["drainSeconds"]),
        "securityContext": pod_security_context(),
        "automountServiceAccountToken": False,  # workers never talk to the API server
        "containers": [container],
        "volumes": [
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": workers["shmSize"]}},
            _model_volume(pool),
            _tmp_volume("4Gi"),
        ],
    }
    if spec["model"]["standIn"]:
        pod_spec["initContainers"] = [{
            "name": "make-stand-in-model",
            "image": workers["image"],
            "imagePullPolicy": workers["imagePullPolicy"],
            "command": ["orpheus-tts"],
            "args": _stand_in_args(pool, f"{cache_mount}/{STAND_IN_DIR}"),
            "env": _TMP_ENV,
            "volumeMounts": [{"name": "model-cache", "mountPath": cache_mount}, _TMP_MOUNT],
            "securityContext": container_security_context(),
        }]
    for key in ("nodeSelector", "tolerations", "affinity"):
        if workers.get(key):
            pod_spec[key] = workers[key]
    annotations = _scrape_annotations(WORKER_PORT)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(cluster, pool.worker_name, "worker", pool=pool),
        "spec": {
            "replicas": pool.replicas,
            "selector": {"matchLabels": pool.selector_labels},
            # A new worker must be Ready before an old one drains: capacity never dips.
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": pool.labels, "annotations": annotations},
                "spec": pod_spec,
            },
        },
    }


def worker_service(cluster: Cluster, pool: Pool | None = None) -> Manifest:
    """Headless: the gateway discovers each ready worker through its EndpointSlices."""
    pool = _pool(cluster, pool)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(cluster, pool.service_name, "worker", pool=pool),
        "spec": {
            "clusterIP": "None",
            "selector": pool.selector_labels,
            "ports": [{"name": "http", "port": WORKER_PORT, "targetPort": "http",
                       "protocol": "TCP"}],
        },
    }


# --- gateway -----------------------------------------------------------------------------------
def gateway_args(cluster: Cluster) -> list[str]:
    gateway = cluster.spec["gateway"]
    per_replica = limits_per_replica(cluster)
    args = [
        "gateway",
        "--host", "0.0.0.0",
        "--port", str(GATEWAY_PORT),
        *(["--discover", f"{cluster.namespace}/{cluster.pools[0].service_name}"]
          if cluster.single_pool else ["--pools-file", f"{CONFIG_MOUNT}/{POOLS_FILE}"]),
        "--rate-limit-rpm", str(per_replica["requestsPerMinute"]),
        "--max-streams-per-key", str(per_replica["concurrentStreams"]),
        "--max-pending", str(gateway["limits"]["pendingRequests"]),
    ]
    if gateway.get("voiceAliases"):
        args += ["--voice-aliases", f"{CONFIG_MOUNT}/{VOICE_ALIASES_FILE}"]
    if gateway.get("defaultVoice"):
        args += ["--default-voice", gateway["defaultVoice"]]
    auth = gateway["auth"]
    if auth["enabled"]:
        args += ["--api-keys-file", f"{KEYS_MOUNT}/{auth['secretRef']['key']}",
                 "--system-keys-file", f"{SYSTEM_KEY_MOUNT}/{SYSTEM_KEY_FIELD}"]
    else:
        args += ["--no-auth"]
    return args


def gateway_deployment(cluster: Cluster) -> Manifest:
    gateway = cluster.spec["gateway"]
    auth = gateway["auth"]
    mounts = [{"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True}, _TMP_MOUNT]
    volumes = [_config_volume(cluster), _tmp_volume("256Mi")]
    if auth["enabled"]:
        mounts.append({"name": "api-keys", "mountPath": KEYS_MOUNT, "readOnly": True})
        volumes.append({"name": "api-keys",
                        "secret": {"secretName": auth["secretRef"]["name"],
                                   "items": [{"key": auth["secretRef"]["key"],
                                              "path": auth["secretRef"]["key"]}]}})
        mounts.append({"name": "system-key", "mountPath": SYSTEM_KEY_MOUNT, "readOnly": True})
        volumes.append({"name": "system-key",
                        "secret": {"secretName": system_key_secret_name(cluster.name),
                                   "items": [{"key": SYSTEM_KEY_FIELD,
                                              "path": SYSTEM_KEY_FIELD}]}})
    container: dict[str, Any] = {
        "name": "gateway",
        "image": gateway["image"],
        "imagePullPolicy": gateway["imagePullPolicy"],
        "command": ["orpheus-tts"],
        "args": gateway_args(cluster),
        "ports": [{"name": "http", "containerPort": GATEWAY_PORT, "protocol": "TCP"}],
        "env": _downward_env() + _TMP_ENV + [_internal_token_env(cluster)]
        + list(gateway.get("env") or []),
        "volumeMounts": mounts,
        "lifecycle": _pre_stop(),
        "securityContext": container_security_context(),
        **_probes(GATEWAY_STARTUP_SECONDS, **GATEWAY_PROBES),
    }
    if gateway.get("resources"):
        container["resources"] = gateway["resources"]
    pod_spec: dict[str, Any] = {
        "serviceAccountName": gateway_name(cluster.name),
        "terminationGracePeriodSeconds": termination_grace_seconds(GATEWAY_DRAIN_SECONDS),
        "securityContext": pod_security_context(),
        "containers": [container],
        "volumes": volumes,
    }
    for key in ("nodeSelector", "tolerations"):
        if gateway.get(key):
            pod_spec[key] = gateway[key]
    annotations = {**_scrape_annotations(GATEWAY_PORT),
                   CONFIG_HASH_ANNOTATION: config_hash(cluster)}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(cluster, gateway_name(cluster.name), "gateway"),
        "spec": {
            "replicas": gateway["replicas"],
            "selector": {"matchLabels": selector_labels(cluster.name, "gateway")},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": labels(cluster.name, "gateway"), "annotations": annotations},
                "spec": pod_spec,
            },
        },
    }


def gateway_service(cluster: Cluster) -> Manifest:
    service = cluster.spec["gateway"]["service"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(cluster, gateway_name(cluster.name), "gateway"),
        "spec": {
            "type": service["type"],
            "selector": selector_labels(cluster.name, "gateway"),
            "ports": [{"name": "http", "port": service["port"], "targetPort": "http",
                       "protocol": "TCP"}],
        },
    }


def gateway_rbac(cluster: Cluster) -> list[Manifest]:
    """The gateway's identity: it watches the worker Service's EndpointSlices, nothing else."""
    name = gateway_name(cluster.name)
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": _meta(cluster, name, "gateway")},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": _meta(cluster, name, "gateway"),
         "rules": [{"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                    "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": _meta(cluster, name, "gateway"),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": name,
                       "namespace": cluster.namespace}]},
    ]


# --- availability and monitoring ---------------------------------------------------------------
def disruption_budgets(cluster: Cluster) -> list[Manifest]:
    """One per pool's workers, then the gateway's."""
    def budget(name: str, component: str, selector: dict[str, str],
               pool: Pool | None = None) -> Manifest:
        return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                "metadata": _meta(cluster, name, component, pool=pool),
                "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector}}}

    return [*(budget(pool.worker_name, "worker", pool.selector_labels, pool)
              for pool in cluster.pools),
            budget(gateway_name(cluster.name), "gateway",
                   selector_labels(cluster.name, "gateway"))]


def service_monitor(cluster: Cluster) -> Manifest:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": _meta(cluster, cluster.name, "monitoring"),
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/instance": cluster.name,
                                         "app.kubernetes.io/managed-by": MANAGED_BY}},
            "endpoints": [{"port": "http", "path": "/metrics", "interval": "15s"}],
        },
    }


def worker_network_policy(cluster: Cluster) -> Manifest:
    """Only this cluster's gateway pods reach the worker port; nothing else reaches a worker.

    One policy for every pool: its selector (the cluster's worker labels) matches each pool's
    workers, whose labels add only the pool's.

    Enforced by the CNI (Calico, Cilium, ...: one that implements NetworkPolicy). Kubelet
    probes come from the node and are allowed by those CNIs regardless. A Prometheus that
    scrapes workers directly needs a NetworkPolicy of its own added beside this one.
    """
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(cluster, worker_name(cluster.name), "worker"),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(cluster.name, "worker")},
            "policyTypes": ["Ingress"],
            "ingress": [{
                "from": [{"podSelector": {"matchLabels": selector_labels(cluster.name,
                                                                         "gateway")}}],
                "ports": [{"protocol": "TCP", "port": WORKER_PORT}],
            }],
        },
    }


def _secret(cluster: Cluster, name: str, component: str, field: str, value: str) -> Manifest:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(cluster, name, component),
            "type": "Opaque", "stringData": {field: value}}


def internal_token_secret(cluster: Cluster, token: str) -> Manifest:
    """The token every worker of the cluster requires of its callers, and its gateways send.

    Like the system key: created once with a random value, never rewritten, owned by the
    cluster (deleted with it).
    """
    return _secret(cluster, internal_token_secret_name(cluster.name), "worker",
                   INTERNAL_TOKEN_FIELD, token)


def system_key_secret(cluster: Cluster, key: str) -> Manifest:
    """The key the autoscaler reads the gateway's `/v1/system` with (and nothing else).

    Created once with a random key and never rewritten (the reconciler only creates it), so
    it is not one of `children()`: those are re-applied from the spec on every pass.
    """
    return _secret(cluster, system_key_secret_name(cluster.name), "gateway", SYSTEM_KEY_FIELD,
                   key)


def children(cluster: Cluster, options: Options = Options()) -> list[Manifest]:
    """Every object the operator keeps in place for `cluster`, in apply order."""
    pools = cluster.pools
    objects = [config_map(cluster), *gateway_rbac(cluster), worker_network_policy(cluster),
               *(worker_service(cluster, pool) for pool in pools),
               *(worker_deployment(cluster, pool) for pool in pools),
               gateway_service(cluster), gateway_deployment(cluster),
               *disruption_budgets(cluster)]
    if options.service_monitor:
        objects.append(service_monitor(cluster))
    return objects
