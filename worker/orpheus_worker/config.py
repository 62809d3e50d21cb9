"""Worker configuration and its command line (`orpheus-tts worker ...`)."""

from __future__ import annotations

import argparse
import json
import socket
from dataclasses import dataclass, field
from typing import Any

from orpheus_tts.protocol import DEFAULT_MAX_TEXT_CHARS, DEFAULT_MAX_TIMEOUT_S, DEFAULT_TIMEOUT_S

from .guard import read_internal_token
from .snac_stream import DEFAULT_LEFT_CONTEXT, DEFAULT_RIGHT_CONTEXT, SNAC_DTYPES, SNAC_MODES
from .text import DEFAULT_SEGMENT_CHARS


@dataclass
class WorkerConfig:
    model: str
    snac: str
    host: str = "127.0.0.1"
    port: int = 8100
    worker_id: str | None = None
    voices: str = "english"  # the command line's default: the checkpoint's own set (below)
    max_num_seqs: int = 8
    max_streams: int | None = None  # admission cap; default max_num_seqs
    max_queue: int = 16
    max_model_len: int = 4096
    gpu_memory_utilization: float = 0.9
    dtype: str = "auto"
    constrain_to_audio_tokens: bool = False
    drain_seconds: float = 30.0
    default_timeout_s: float = DEFAULT_TIMEOUT_S
    max_timeout_s: float = DEFAULT_MAX_TIMEOUT_S
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS
    segment_chars: int = DEFAULT_SEGMENT_CHARS
    # max_tokens default: enough tokens for min_audio_s + audio_s_per_char * len(text) seconds;
    # None: 3.0 s + 0.2 s/char, or 0.5 s + 0.02 s/char for the random stand-in checkpoint
    min_audio_s: float | None = None
    audio_s_per_char: float | None = None
    temperature: float = 0.6
    top_p: float = 0.8
    repetition_penalty: float = 1.3
    snac_device: str = "auto"
    snac_deterministic: bool = False
    snac_right_context: int = DEFAULT_RIGHT_CONTEXT
    snac_left_context: int = DEFAULT_LEFT_CONTEXT
    snac_max_batch: int | None = None  # default: 32 on a GPU, 4 on CPU (docs/benchmarks.md)
    snac_mode: str = "eager"  # eager, compile or cudagraphs (CUDA only); `make bench-gpu`
    snac_dtype: str = "float32"
    engine_args: dict[str, Any] = field(default_factory=dict)
    # gateways must send it (X-Orpheus-Internal-Token); None: no check (local use)
    internal_token: str | None = field(default=None, repr=False)

    @property
    def capacity(self) -> int:
        return self.max_streams or self.max_num_seqs

    @property
    def resolved_worker_id(self) -> str:
        return self.worker_id or f"{socket.gethostname()}-{self.port}"


def _coerce(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def _engine_arg(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--engine-arg wants KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip().replace("-", "_"), _coerce(value)


def build_parser() -> argparse.ArgumentParser:
    d = WorkerConfig(model="", snac="")
    p = argparse.ArgumentParser(
        prog="orpheus-tts worker",
        description="Serve the v1 streaming TTS contract with vLLM (Orpheus) + SNAC.",
    )
    p.add_argument("--model", required=True, help="Orpheus LLM: a directory or a hub id")
    p.add_argument("--snac", required=True, help="SNAC 24 kHz decoder: a directory or a hub id")
    p.add_argument("--host", default=d.host)
    p.add_argument("--port", type=int, default=d.port, help="0 picks a free port")
    p.add_argument("--worker-id", default=None, help="default: HOSTNAME-PORT")
    p.add_argument("--voices", default=None,
                   help="voice set: english, arabic, a JSON file, or comma-separated names "
                   "(default: the stand-in checkpoint's `orpheus_voices`, else english)")
    p.add_argument("--max-num-seqs", type=int, default=d.max_num_seqs,
                   help="vLLM batch size; also the default stream cap")
    p.add_argument("--max-streams", type=int, default=None,
                   help="concurrent streams admitted (default: --max-num-seqs)")
    p.add_argument("--max-queue", type=int, default=d.max_queue,
                   help="streams waiting for a slot before 429")
    p.add_argument("--max-model-len", type=int, default=d.max_model_len)
    p.add_argument("--gpu-memory-utilization", type=float, default=d.gpu_memory_utilization)
    p.add_argument("--dtype", default=d.dtype)
    p.add_argument("--constrain-to-audio-tokens", action="store_true",
                   help="only sample audio tokens and the stop token (for random weights; "
                   "automatic for the make-tiny-model stand-in)")
    p.add_argument("--drain-seconds", type=float, default=d.drain_seconds,
                   help="on SIGTERM, how long inflight streams may finish")
    p.add_argument("--default-timeout-s", type=float, default=d.default_timeout_s)
    p.add_argument("--max-timeout-s", type=float, default=d.max_timeout_s)
    p.add_argument("--max-text-chars", type=int, default=d.max_text_chars)
    p.add_argument("--segment-chars", type=int, default=d.segment_chars,
                   help="long text is generated in sentence-aligned segments of at most this")
    p.add_argument("--min-audio-s", type=float, default=None,
                   help="default max_tokens covers min-audio-s + audio-s-per-char x chars "
                   "(default 3 s + 0.2 s/char; 0.5 s + 0.02 s/char for the stand-in)")
    p.add_argument("--audio-s-per-char", type=float, default=None)
    p.add_argument("--temperature", type=float, default=d.temperature)
    p.add_argument("--top-p", type=float, default=d.top_p)
    p.add_argument("--repetition-penalty", type=float, default=d.repetition_penalty)
    p.add_argument("--snac-device", default=d.snac_device, help="auto, cpu or cuda[:N]")
    p.add_argument("--snac-deterministic", action="store_true",
                   help="switch SNAC's noise blocks off (bit-exact decoding)")
    p.add_argument("--snac-right-context", type=int, default=d.snac_right_context,
                   help="samples of lookahead before audio is emitted")
    p.add_argument("--snac-left-context", type=int, default=d.snac_left_context)
    p.add_argument("--snac-max-batch", type=int, default=None,
                   help="windows per SNAC call (default: 32 on a GPU, 4 on CPU)")
    p.add_argument("--snac-mode", choices=SNAC_MODES, default=d.snac_mode,
                   help="SNAC decoder: eager (default), compile (torch.compile) or cudagraphs "
                   "(CUDA only); see `make bench-gpu` in docs/benchmarks.md")
    p.add_argument("--snac-dtype", choices=SNAC_DTYPES, default=d.snac_dtype,
                   help="SNAC weights and activations (bfloat16 costs some SNR, see benchmarks)")
    p.add_argument("--engine-arg", action="append", type=_engine_arg, default=[],
                   metavar="KEY=VALUE", help="extra vLLM AsyncEngineArgs (JSON values)")
    p.add_argument("--internal-token-file", default=None, metavar="FILE",
                   help="refuse stream and state requests without this token (default: "
                   "$ORPHEUS_INTERNAL_TOKEN; neither: no check, for local use)")
    return p


def parse_args(argv: list[str]) -> WorkerConfig:
    parser = build_parser()
    values = vars(parser.parse_args(argv))
    values["engine_args"] = dict(values.pop("engine_arg"))
    if values["voices"] is None:
        from .engine import checkpoint_config

        values["voices"] = checkpoint_config(values["model"]).get("orpheus_voices") or WorkerConfig.voices
    try:
        values["internal_token"] = read_internal_token(values.pop("internal_token_file"))
    except (OSError, ValueError) as exc:
        parser.error(f"--internal-token-file: {exc}")
    return WorkerConfig(**values)
