"""The `OrpheusCluster` CustomResourceDefinition, defined once, here.

`crds/orpheusclusters.yaml` (package data) and the Helm chart's `crds/` copy are generated from
`crd()` by `python -m orpheus_operator.crd --write`; a unit test fails when either drifts.
The operator applies the same schema defaults itself (`defaults.py`), so the manifests it builds
never depend on whether a field was spelled out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

GROUP = "tts.orpheus.dev"
VERSION = "v1alpha1"
KIND = "OrpheusCluster"
PLURAL = "orpheusclusters"
SINGULAR = "orpheuscluster"
SHORT_NAMES = ["otts"]
API_VERSION = f"{GROUP}/{VERSION}"
CRD_NAME = f"{PLURAL}.{GROUP}"

DEFAULT_WORKER_IMAGE = "orpheus-tts-worker:latest"
DEFAULT_GATEWAY_IMAGE = "orpheus-tts-gateway:latest"
DEFAULT_SNAC = "hubertsiuzdak/snac_24khz"

# The autoscaler's defaults: the parameters `make bench-autoscale` measured. The policy's own
# dataclass defaults (`orpheus_operator.autoscaler.policy.AutoscalingSpec`) match these; a unit
# test keeps them equal, so the API's defaults do not depend on importing the implementation.
AUTOSCALING_DEFAULTS: dict[str, Any] = {
    "targetQueueDepthPerWorker": 1.0,
    "targetTTFAp95Ms": 1000,
    "scaleUpStabilizationSeconds": 0,
    "scaleDownStabilizationSeconds": 90,
    "maxScaleUpStep": 10,
    "maxScaleDownStep": 4,
    "intervalSeconds": 10,
    "targetUtilization": 0.8,
    "scaleDownUtilization": 0.6,
    "tolerance": 0.1,
    "workerCapacity": 8,
}
# Model pools: the gateway's limits (orpheus_gateway.pools); a unit test keeps them equal.
MAX_POOLS = 16
POOL_NAME_PATTERN = "^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$"
# OpenAI's generic model names (orpheus_gateway.models.OPENAI_MODEL_NAMES): no pool's own name.
GENERIC_MODEL_NAMES = ("gpt-4o-mini-tts", "tts-1", "tts-1-hd", "orpheus")
# (old spelling, new spelling): still accepted, reported in the `Deprecated` condition.
DEPRECATED_FIELDS = (("targetTTFBp95Ms", "targetTTFAp95Ms"),)

PACKAGE_CRD_PATH = Path(__file__).parent / "crds" / "orpheusclusters.yaml"
REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_CRD_PATH = REPO_ROOT / "charts" / "orpheus-operator" / "crds" / "orpheusclusters.yaml"

Schema = dict[str, Any]


# --- small schema builders ---------------------------------------------------------------------
def _obj(properties: dict[str, Schema], *, description: str = "", required: list[str] | None = None,
         default: Any = None, rules: list[tuple[str, str]] | None = None) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    if description:
        schema["description"] = description
    if required:
        schema["required"] = required
    if default is not None:
        schema["default"] = default
    if rules:
        schema["x-kubernetes-validations"] = [{"rule": r, "message": m} for r, m in rules]
    return schema


def _str(description: str, default: str | None = None, enum: list[str] | None = None,
         **extra: Any) -> Schema:
    schema: Schema = {"type": "string", "description": description, **extra}
    if default is not None:
        schema["default"] = default
    if enum:
        schema["enum"] = enum
    return schema


def _int(description: str, default: int | None = None, minimum: int | None = None,
         maximum: int | None = None) -> Schema:
    schema: Schema = {"type": "integer", "format": "int32", "description": description}
    if default is not None:
        schema["default"] = default
    if minimum is not None:
        schema["minimum"] = minimum
    if maximum is not None:
        schema["maximum"] = maximum
    return schema


def _num(description: str, default: float, minimum: float, maximum: float | None = None,
         exclusive_minimum: bool = False) -> Schema:
    schema: Schema = {"type": "number", "description": description, "default": default,
                      "minimum": minimum}
    if exclusive_minimum:
        schema["exclusiveMinimum"] = True
    if maximum is not None:
        schema["maximum"] = maximum
    return schema


def _bool(description: str, default: bool) -> Schema:
    return {"type": "boolean", "description": description, "default": default}


def _string_map(description: str) -> Schema:
    return {"type": "object", "description": description,
            "additionalProperties": {"type": "string"}}


def _opaque(description: str) -> Schema:
    """A Kubernetes core type passed through to pod specs as written (validated there)."""
    return {"type": "object", "description": description,
            "x-kubernetes-preserve-unknown-fields": True}


_QUANTITY = {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True}


def _resources(description: str, default: Schema | None) -> Schema:
    quantities = {"type": "object", "additionalProperties": _QUANTITY}
    schema = _obj({"limits": quantities, "requests": quantities}, description=description)
    if default is not None:
        schema["default"] = default
    return schema


_TOLERATIONS: Schema = {
    "type": "array",
    "description": "Pod tolerations (core/v1 Toleration).",
    "items": _obj({
        "key": {"type": "string"},
        "operator": {"type": "string", "enum": ["Exists", "Equal"]},
        "value": {"type": "string"},
        "effect": {"type": "string", "enum": ["NoSchedule", "PreferNoSchedule", "NoExecute"]},
        "tolerationSeconds": {"type": "integer", "format": "int64"},
    }),
}

_ENV: Schema = {
    "type": "array",
    "description": "Extra container environment (core/v1 EnvVar, valueFrom allowed).",
    "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}},
              "x-kubernetes-preserve-unknown-fields": True},
}


# --- the spec ----------------------------------------------------------------------------------
def model_schema() -> Schema:
    return _obj(
        {
            "name": _str("Hugging Face hub id or a path inside the cache volume, e.g. "
                         "canopylabs/orpheus-3b-0.1-ft."),
            "revision": _str("Hub revision (branch, tag or commit) of `name`."),
            "snac": _str("SNAC decoder: hub id or path.", DEFAULT_SNAC),
            "voices": {"type": "array", "items": {"type": "string"}, "maxItems": 64,
                       "description": "Voice names the model was trained with, or one voice set "
                                      "(`english`, `arabic`); the worker's `--voices`. Default: "
                                      "the worker's English set."},
            "standIn": _bool("Serve the project's random-weight stand-in checkpoint, generated by "
                             "an init container (`orpheus-tts make-tiny-model`). For kind and CI: "
                             "the audio is noise.", False),
            "cache": _obj(
                {
                    "type": _str("Where weights are cached.", "emptyDir", ["emptyDir", "pvc"]),
                    "claimName": _str("PersistentVolumeClaim name (type pvc)."),
                    "sizeLimit": _str("emptyDir size limit.", "40Gi"),
                    "mountPath": _str("Mount path in the worker.", "/models"),
                },
                description="The model cache volume.",
                default={},
                rules=[("!has(self.type) || self.type != 'pvc' || has(self.claimName)",
                        "model.cache.claimName is required when model.cache.type is pvc")],
            ),
        },
        description="What the workers serve.",
        rules=[("(has(self.standIn) && self.standIn) || has(self.name)",
                "model.name is required unless model.standIn is true")],
    )


def engine_schema() -> Schema:
    return _obj(
        {
            "maxNumSeqs": _int("Most sequences vLLM runs at once per worker.", 32, 1, 4096),
            "gpuMemoryUtilization": _num("Fraction of GPU memory vLLM may use.", 0.9, 0.0, 1.0,
                                         exclusive_minimum=True),
            "maxModelLen": _int("Context length (prompt + audio tokens).", 4096, 256, 131072),
            "dtype": _str("Weights dtype.", "auto", ["auto", "bfloat16", "float16", "float32"]),
            "extraArgs": _string_map("Further vLLM engine arguments, passed as "
                                     "`--engine-arg KEY=VALUE`."),
        },
        description="vLLM engine settings.",
        default={},
    )


def workers_schema() -> Schema:
    return _obj(
        {
            "replicas": _int("Worker count when the autoscaler is off; the scale subresource "
                             "(`kubectl scale`, KEDA, HPA) drives it.", 1, 0),
            "minReplicas": _int("Autoscaler lower bound; 0 scales to zero when idle (the "
                                "gateway holds requests until a worker is ready).", 1, 0),
            "maxReplicas": _int("Autoscaler upper bound.", 4, 1),
            "image": _str("Worker image.", DEFAULT_WORKER_IMAGE),
            "imagePullPolicy": _str("Image pull policy.", "IfNotPresent",
                                    ["Always", "IfNotPresent", "Never"]),
            "resources": _resources("Container resources; by default one `nvidia.com/gpu`.",
                                    {"limits": {"nvidia.com/gpu": 1}}),
            "nodeSelector": _string_map("Pod nodeSelector."),
            "tolerations": _TOLERATIONS,
            "affinity": _opaque("Pod affinity (core/v1 Affinity)."),
            "env": _ENV,
            "drainSeconds": _int("Seconds inflight streams may take to finish after SIGTERM.",
                                 30, 0, 3600),
            "startupSeconds": _int("Seconds the startup probe allows for loading the model.",
                                   900, 30, 7200),
            "shmSize": _str("Size of the /dev/shm memory volume vLLM uses.", "2Gi"),
        },
        description="The GPU workers.",
        default={},
        rules=[("!has(self.minReplicas) || !has(self.maxReplicas) "
                "|| self.minReplicas <= self.maxReplicas",
                "workers.minReplicas must not exceed workers.maxReplicas")],
    )


def gateway_schema() -> Schema:
    return _obj(
        {
            "replicas": _int("Gateway replicas.", 1, 1, 64),
            "image": _str("Gateway image.", DEFAULT_GATEWAY_IMAGE),
            "imagePullPolicy": _str("Image pull policy.", "IfNotPresent",
                                    ["Always", "IfNotPresent", "Never"]),
            "resources": _resources("Container resources.", None),
            "nodeSelector": _string_map("Pod nodeSelector."),
            "tolerations": _TOLERATIONS,
            "env": _ENV,
            "service": _obj(
                {
                    "type": _str("Service type.", "ClusterIP",
                                 ["ClusterIP", "NodePort", "LoadBalancer"]),
                    "port": _int("Service port.", 8000, 1, 65535),
                },
                description="The gateway Service clients reach.",
                default={},
            ),
            "auth": _obj(
                {
                    "enabled": _bool("Require an API key. Turning it off is for local use.",
                                     True),
                    "secretRef": _obj(
                        {"name": _str("Secret holding the API keys, one per line."),
                         "key": _str("Key of the Secret.", "keys")},
                        required=["name"],
                    ),
                },
                description="API-key authentication.",
                default={},
                rules=[("!has(self.enabled) || !self.enabled || has(self.secretRef)",
                        "gateway.auth.secretRef is required when gateway.auth.enabled is true")],
            ),
            "voiceAliases": _string_map("Request voice name -> model voice (e.g. OpenAI's "
                                        "`alloy` -> `tara`); overrides the entries of the "
                                        "gateway's built-in OpenAI/Groq alias table."),
            "defaultVoice": _str("Voice used when a request names none."),
            "limits": _obj(
                {
                    "requestsPerMinute": _int("Requests per minute per API key, for the whole "
                                              "cluster: each of the N gateway replicas "
                                              "enforces ceil(limit / N) (status.gateway."
                                              "limitsPerReplica).", 600, 1),
                    "concurrentStreams": _int("Concurrent streams per API key, for the whole "
                                              "cluster (divided among gateway replicas like "
                                              "requestsPerMinute).", 16, 1),
                    "pendingRequests": _int("Requests the gateway holds while no worker can "
                                            "take them (scale from zero); beyond: 503 with "
                                            "Retry-After.", 64, 0, 100000),
                },
                description="Per-key limits.",
                default={},
            ),
        },
        description="The gateway in front of the workers.",
        default={},
    )


def autoscaling_schema() -> Schema:
    d = AUTOSCALING_DEFAULTS
    return _obj(
        {
            "enabled": _bool("Let the operator's autoscaler drive the scale subresource "
                             "(spec.workers.replicas). Off: `kubectl scale`, KEDA or an HPA "
                             "does; the operator still reports queue and TTFA.", False),
            "targetQueueDepthPerWorker": _num("Queued requests per ready worker to aim for.",
                                              d["targetQueueDepthPerWorker"], 0.0,
                                              exclusive_minimum=True),
            # No schema default: it would hide whether the deprecated spelling was meant.
            "targetTTFAp95Ms": _int(f"Target p95 time to first audio, milliseconds (default "
                                    f"{d['targetTTFAp95Ms']}).", None, 1),
            "targetTTFBp95Ms": _int("Deprecated spelling of targetTTFAp95Ms (still read; the "
                                    "Deprecated condition says so).", None, 1),
            "scaleUpStabilizationSeconds": _int("Window before scaling up.",
                                                d["scaleUpStabilizationSeconds"], 0, 3600),
            "scaleDownStabilizationSeconds": _int(
                "Both signals must stay under target this long before scaling down; with "
                "minReplicas 0, the idle time before the last worker goes.",
                d["scaleDownStabilizationSeconds"], 0, 86400),
            "maxScaleUpStep": _int("Most workers added per decision.", d["maxScaleUpStep"], 1),
            "maxScaleDownStep": _int("Most workers removed per decision.",
                                     d["maxScaleDownStep"], 1),
            "intervalSeconds": _int("Seconds between autoscaler decisions (and metric reads).",
                                    d["intervalSeconds"], 1, 3600),
            "targetUtilization": _num("Fraction of a worker's concurrent streams to aim for.",
                                      d["targetUtilization"], 0.0, 1.0, exclusive_minimum=True),
            "scaleDownUtilization": _num("Utilization a shrunk fleet may run at (hysteresis: "
                                         "below targetUtilization).",
                                         d["scaleDownUtilization"], 0.0, 1.0,
                                         exclusive_minimum=True),
            "tolerance": _num("Relative deviation from target ignored by both signals.",
                              d["tolerance"], 0.0, 1.0),
            "workerCapacity": _int("Concurrent streams per worker when the gateway reports "
                                   "none.", d["workerCapacity"], 1, 4096),
        },
        description="Autoscaling on queue depth and p95 time to first audio.",
        default={},
        rules=[("!(has(self.targetTTFAp95Ms) && has(self.targetTTFBp95Ms))",
                "set autoscaling.targetTTFAp95Ms only (targetTTFBp95Ms is its deprecated "
                "spelling)")],
    )


def _without_defaults(schema: Any) -> Any:
    """`schema` with no `default` anywhere: a pool's blocks inherit the cluster's, so an
    absent field must stay absent (the API server would otherwise fill it in)."""
    if isinstance(schema, dict):
        return {k: _without_defaults(v) for k, v in schema.items() if k != "default"}
    if isinstance(schema, list):
        return [_without_defaults(v) for v in schema]
    return schema


def pools_schema() -> Schema:
    model = model_schema()
    model["required"] = ["name"]
    model["properties"]["name"] = {
        **model["properties"]["name"], "maxLength": 256,
        "description": "The model's public name, which requests pick it by (the OpenAI/Groq "
                       "`model` field): a Hugging Face hub id or, with standIn, the name the "
                       "stand-in serves under."}
    pool = _obj(
        {
            "name": _str("Pool name: part of its children's names and the `pool` metrics "
                         "label.", pattern=POOL_NAME_PATTERN, maxLength=32),
            "model": model,
            "voiceAliases": _string_map("Request voice name -> this model's voice (Groq's "
                                        "`aisha` -> `lulwa`); a voice set's own aliases "
                                        "(model.voices: [arabic]) are included."),
            "defaultVoice": _str("Voice used when a request for this pool names none."),
            "engine": _without_defaults(engine_schema()),
            "workers": _without_defaults(workers_schema()),
            "autoscaling": _without_defaults(autoscaling_schema()),
        },
        description="One model's workers. engine, workers and autoscaling start from the "
                    "cluster's spec.engine, spec.workers and spec.autoscaling: each field a "
                    "pool sets replaces the cluster's.",
        required=["name", "model"],
        rules=[(
            "!(self.model.name in " + str(list(GENERIC_MODEL_NAMES)) + ")",
            "a pool's model.name must be its model's own name: "
            + ", ".join(GENERIC_MODEL_NAMES) + " name no model in particular",
        )],
    )
    return {
        "type": "array",
        "description": "Model pools behind one gateway (instead of spec.model). A request goes "
                       "to the pool its `model` names, else the one pool serving its voice (a "
                       "voice several pools serve needs `model`), else spec.defaultPool "
                       "(docs/operator.md, 'Model pools').",
        "minItems": 1,
        "maxItems": MAX_POOLS,
        "items": pool,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name"],
        "x-kubernetes-validations": [{
            "rule": "self.all(p, self.exists_one(q, q.model.name == p.model.name))",
            "message": "each pool serves its own model: spec.pools[].model.name must be "
                       "unique",
        }],
    }


def spec_schema() -> Schema:
    return _obj(
        {"model": model_schema(), "engine": engine_schema(), "workers": workers_schema(),
         "gateway": gateway_schema(), "autoscaling": autoscaling_schema(),
         "pools": pools_schema(),
         "defaultPool": _str("The pool serving requests that name neither a model nor a voice "
                             "of one pool (default: the first of spec.pools).", maxLength=32)},
        description="Desired state of an Orpheus TTS deployment: one model (spec.model) or "
                    "several model pools (spec.pools) behind one gateway.",
        rules=[(
            "has(self.model) != has(self.pools)",
            "give spec.model (one model) or spec.pools (several model pools), not both",
        ), (
            "!has(self.defaultPool) || (has(self.pools) "
            "&& self.pools.exists(p, p.name == self.defaultPool))",
            "spec.defaultPool must name one of spec.pools",
        ), (
            "!has(self.pools) || !has(self.gateway) "
            "|| (!has(self.gateway.voiceAliases) && !has(self.gateway.defaultVoice))",
            "with spec.pools, set voiceAliases and defaultVoice per pool "
            "(spec.pools[].voiceAliases, spec.pools[].defaultVoice)",
        ), (
            "!has(self.autoscaling) || !has(self.autoscaling.enabled) || !self.autoscaling.enabled"
            " || !has(self.workers) || (self.workers.replicas >= self.workers.minReplicas"
            " && self.workers.replicas <= self.workers.maxReplicas)",
            "workers.replicas must lie within [workers.minReplicas, workers.maxReplicas] when "
            "autoscaling is enabled",
        )],
    )


# --- the status --------------------------------------------------------------------------------
CONDITION_TYPES = ("Ready", "Progressing", "Degraded", "ScalingActive", "Deprecated")


def status_schema() -> Schema:
    condition = _obj(
        {
            "type": _str("Ready, Progressing, Degraded, ScalingActive or Deprecated."),
            "status": _str("True, False or Unknown.", enum=["True", "False", "Unknown"]),
            "reason": _str("CamelCase reason."),
            "message": _str("Human-readable detail."),
            "lastTransitionTime": _str("When status last changed.", format="date-time"),
            "observedGeneration": {"type": "integer", "format": "int64"},
        },
        required=["type", "status"],
    )
    return _obj(
        {
            "observedGeneration": {"type": "integer", "format": "int64",
                                   "description": "The generation the operator last acted on."},
            "conditions": {"type": "array", "items": condition,
                           "x-kubernetes-list-type": "map",
                           "x-kubernetes-list-map-keys": ["type"]},
            "workers": _obj({
                "replicas": _int("Workers the Deployment is asked for."),
                "readyReplicas": _int("Ready workers."),
                "summary": _str("ready/desired, for `kubectl get`."),
                "selector": _str("Label selector of worker pods (scale subresource)."),
            }),
            "gateway": _obj({
                "ready": {"type": "boolean"},
                "readyReplicas": _int("Ready gateway pods."),
                "endpoint": _str("URL clients use."),
                "limitsPerReplica": _obj({
                    "replicas": _int("Gateway replicas the limits are divided among."),
                    "requestsPerMinute": _int("Per key, enforced by each replica."),
                    "concurrentStreams": _int("Per key, enforced by each replica."),
                }, description="spec.gateway.limits as each gateway replica enforces them."),
            }),
            "metrics": _obj({
                "queueDepth": _int("Requests queued at the gateway."),
                "ttfaP95Ms": {"type": "number",
                              "description": "p95 time to first audio, milliseconds."},
                "observedAt": _str("When the gateway was last read.", format="date-time"),
                "lastScaleTime": _str("Time of the last scale decision.", format="date-time"),
                "lastScaleReason": _str("Why the last scale decision was made."),
            }),
            "pools": {
                "type": "array",
                "description": "One block per model pool (one, named `default`, for the "
                               "single-model form).",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": _obj({
                    "name": _str("The pool."),
                    "model": _str("What it serves."),
                    "deployment": _str("Its worker Deployment."),
                    "replicas": _int("Workers its Deployment is asked for."),
                    "readyReplicas": _int("Ready workers."),
                    "ready": {"type": "boolean", "description": "At least one worker ready."},
                    "summary": _str("ready/desired."),
                    "queueDepth": _int("Its requests queued at the gateway."),
                    "ttfaP95Ms": {"type": "number",
                                  "description": "Its p95 time to first audio, milliseconds."},
                    "lastScaleTime": _str("Time of its last scale decision.", format="date-time"),
                    "lastScaleReason": _str("Why its last scale decision was made."),
                }, required=["name"]),
            },
            "poolsReady": _str("Pools with a ready worker / pools, for `kubectl get`."),
            "autoscaler": {
                "type": "object",
                "description": "Autoscaler state: its policy state and recent decisions (written "
                               "by the autoscaler only; the replica count itself is "
                               "spec.workers.replicas, or spec.pools[].workers.replicas; with "
                               "pools, one entry per pool under `pools`).",
                "x-kubernetes-preserve-unknown-fields": True,
            },
        },
        description="Observed state, written by the operator.",
    )


PRINTER_COLUMNS = [
    {"name": "Ready", "type": "string",
     "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
    {"name": "Workers", "type": "string", "jsonPath": ".status.workers.summary"},
    {"name": "Endpoint", "type": "string", "jsonPath": ".status.gateway.endpoint"},
    {"name": "TTFA p95", "type": "number", "jsonPath": ".status.metrics.ttfaP95Ms"},
    {"name": "Queue", "type": "integer", "jsonPath": ".status.metrics.queueDepth"},
    {"name": "Pools", "type": "string", "jsonPath": ".status.poolsReady"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def crd() -> dict[str, Any]:
    """The whole CustomResourceDefinition object (apiextensions.k8s.io/v1)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME,
                     "labels": {"app.kubernetes.io/name": "orpheus-operator",
                                "app.kubernetes.io/part-of": "orpheus-tts"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"kind": KIND, "plural": PLURAL, "singular": SINGULAR,
                      "listKind": f"{KIND}List", "shortNames": SHORT_NAMES,
                      "categories": ["orpheus"]},
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": "An Orpheus text-to-speech deployment: GPU workers behind "
                                   "a gateway.",
                    "required": ["spec"],
                    "x-kubernetes-validations": [{
                        # NAME-POOL-workers is a Service name: a DNS label of 63 at most
                        "rule": "!has(self.spec.pools) || self.spec.pools.all(p, "
                                "size(self.metadata.name) + size(p.name) <= 54)",
                        "message": "a pool's Service NAME-POOL-workers must fit 63 "
                                   "characters: shorten the cluster's or the pool's name",
                    }],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "metadata": {"type": "object"},
                        "spec": spec_schema(),
                        "status": status_schema(),
                    },
                }},
                "subresources": {
                    "status": {},
                    "scale": {
                        "specReplicasPath": ".spec.workers.replicas",
                        "statusReplicasPath": ".status.workers.replicas",
                        "labelSelectorPath": ".status.workers.selector",
                    },
                },
                "additionalPrinterColumns": PRINTER_COLUMNS,
            }],
        },
    }


HEADER = ("# Generated by `python -m orpheus_operator.crd --write` from "
          "operator/orpheus_operator/crd.py. Do not edit.\n")


def render_yaml() -> str:
    return HEADER + yaml.safe_dump(crd(), sort_keys=False, width=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print or write the OrpheusCluster CRD.")
    parser.add_argument("--write", action="store_true",
                        help="write the package copy and the Helm chart copy")
    args = parser.parse_args(argv)
    text = render_yaml()
    if not args.write:
        sys.stdout.write(text)
        return 0
    for path in (PACKAGE_CRD_PATH, CHART_CRD_PATH):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
