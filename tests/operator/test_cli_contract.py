"""The arguments the operator writes into pod templates parse with the real worker and gateway
command lines, to the values the spec asked for."""

from __future__ import annotations

from orpheus_gateway.config import build_parser as gateway_parser
from orpheus_worker.config import parse_args as worker_parse_args

from orpheus_operator import manifests
from orpheus_operator.cluster import Cluster
from tests.operator.test_manifests import body, example


def _expand_pod_name(args: list[str]) -> list[str]:
    return [a.replace("$(POD_NAME)", "demo-worker-abc") for a in args]


def test_worker_args_parse_with_the_worker_cli() -> None:
    spec = {"model": {"name": "org/model", "revision": "v2", "voices": ["tara", "leo"]},
            "engine": {"maxNumSeqs": 8, "gpuMemoryUtilization": 0.75, "maxModelLen": 2048,
                       "dtype": "bfloat16", "extraArgs": {"enforce-eager": "true"}},
            "workers": {"drainSeconds": 45},
            "gateway": {"auth": {"enabled": False}}}
    args = _expand_pod_name(manifests.worker_args(Cluster.from_body(body(spec))))
    assert args[0] == "worker"
    config = worker_parse_args(args[1:])
    assert (config.model, config.snac) == ("org/model", "hubertsiuzdak/snac_24khz")
    assert (config.host, config.port) == ("0.0.0.0", manifests.WORKER_PORT)
    assert config.worker_id == "demo-worker-abc"
    assert config.voices == "tara,leo"
    assert config.max_num_seqs == 8
    assert config.gpu_memory_utilization == 0.75
    assert config.max_model_len == 2048
    assert config.dtype == "bfloat16"
    assert config.drain_seconds == 45
    assert config.engine_args == {"enforce_eager": True, "revision": "v2"}


def test_stand_in_worker_args_parse() -> None:
    cluster = Cluster.from_body({**example("orpheus-cluster.yaml"),
                                 "metadata": {"name": "demo", "namespace": "d", "uid": "u"}})
    config = worker_parse_args(_expand_pod_name(manifests.worker_args(cluster))[1:])
    assert config.model.endswith("/llm") and config.snac.endswith("/snac")
    assert config.constrain_to_audio_tokens is True


def test_gateway_args_parse_with_the_gateway_cli() -> None:
    spec = {"model": {"standIn": True},
            "gateway": {"auth": {"secretRef": {"name": "keys", "key": "api-keys"}},
                        "limits": {"requestsPerMinute": 120, "concurrentStreams": 3},
                        "voiceAliases": {"alloy": "tara"}, "defaultVoice": "leo"}}
    args = manifests.gateway_args(Cluster.from_body(body(spec)))
    assert args[0] == "gateway"
    parsed = gateway_parser().parse_args(args[1:])
    assert (parsed.host, parsed.port) == ("0.0.0.0", manifests.GATEWAY_PORT)
    assert parsed.discover == "voice/tts-workers"
    assert parsed.api_keys_file == "/etc/orpheus/keys/api-keys"
    assert parsed.no_auth is False
    assert parsed.rate_limit_rpm == 120 and parsed.max_streams_per_key == 3
    assert parsed.voice_aliases == "/etc/orpheus/config/voice-aliases.json"
    assert parsed.default_voice == "leo"

    off = Cluster.from_body(body({"model": {"standIn": True},
                                  "gateway": {"auth": {"enabled": False}}}))
    parsed = gateway_parser().parse_args(manifests.gateway_args(off)[1:])
    assert parsed.no_auth is True and parsed.api_keys_file is None
