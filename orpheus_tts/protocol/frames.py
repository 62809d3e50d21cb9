"""Audio format and the NDJSON frames of a v1 stream.

A stream is `chunk`* interleaved with `metrics`+, then exactly one terminal frame (`eos` or
`error`) and nothing after it. Readers ignore unknown frame types and unknown fields.

`chunk_line` is the hot-path encoder every server uses; `line_type` and `chunk_audio` are the
matching hot-path readers for relays (no JSON parse, no pydantic for a chunk line).
"""

from __future__ import annotations

import base64
import binascii
import json
import sys
from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import ErrorCode

SAMPLE_RATE = 24_000
SAMPLE_WIDTH = 2  # bytes, signed 16-bit little-endian
CHANNELS = 1
# The longest line a reader must accept (newline included). A chunk line carries its PCM in
# base64: 1 MiB holds about 16 s of audio, far more than any server puts in one chunk.
MAX_FRAME_BYTES = 1 << 20


def pcm_seconds(samples: int) -> float:
    return samples / SAMPLE_RATE


class _Frame(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ChunkFrame(_Frame):
    type: Literal["chunk"] = "chunk"
    seq: int
    audio: str  # base64 of PCM s16le, 24 kHz, mono
    samples: int

    def pcm(self) -> bytes:
        return base64.b64decode(self.audio)


class MetricsFrame(_Frame):
    type: Literal["metrics"] = "metrics"
    worker_id: str | None = None
    queue_wait_ms: float | None = None
    ttfa_ms: float | None = None  # time to first audio, as the sender measured it
    queue_depth: int | None = None
    inflight: int | None = None


class EosFrame(_Frame):
    type: Literal["eos"] = "eos"
    chunks: int
    samples: int
    audio_s: float
    ttfa_ms: float | None = None
    total_ms: float | None = None
    rtf: float | None = None  # wall time / audio time; under 1 is faster than real time
    # What a worker adds about the generation (absent from other servers).
    prompt_tokens: int | None = None  # the prompt the model read (OpenAI's `input_tokens`)
    tokens: int | None = None  # tokens generated (OpenAI's `output_tokens`)
    frames: int | None = None
    segments: int | None = None
    stray_tokens: int | None = None
    misplaced_tokens: int | None = None


class ErrorFrame(_Frame):
    type: Literal["error"] = "error"
    code: str  # an `ErrorCode` value; readers classify unknown ones with `ErrorCode.of`
    message: str
    retryable: bool = False

    @property
    def error_code(self) -> ErrorCode:
        return ErrorCode.of(self.code)


Frame = Union[ChunkFrame, MetricsFrame, EosFrame, ErrorFrame]
TERMINAL_TYPES = frozenset({"eos", "error"})
_FRAME_TYPES: dict[str, type[_Frame]] = {
    "chunk": ChunkFrame,
    "metrics": MetricsFrame,
    "eos": EosFrame,
    "error": ErrorFrame,
}


class FrameDecodeError(ValueError):
    """A line that is not a JSON object, or a known frame type with a wrong shape."""


def decode_frame(line: bytes | str) -> Frame | None:
    """Parse one NDJSON line. Unknown frame types (and blank lines) give `None`."""
    if not line or not line.strip():
        return None
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise FrameDecodeError(f"not JSON: {line[:80]!r}") from exc
    if not isinstance(obj, dict):
        raise FrameDecodeError(f"not a JSON object: {line[:80]!r}")
    cls = _FRAME_TYPES.get(obj.get("type"))  # type: ignore[arg-type]
    if cls is None:
        return None
    try:
        return cls.model_validate(obj)  # type: ignore[return-value]
    except ValidationError as exc:
        raise FrameDecodeError(f"malformed {obj.get('type')} frame: {exc.errors()[0]}") from exc


def frame_type(line: bytes) -> str | None:
    """The `type` of an NDJSON line without validating it (for passthrough)."""
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    return obj.get("type") if isinstance(obj, dict) else None


def encode_frame(frame: Frame) -> bytes:
    """One NDJSON line, newline included."""
    return frame.model_dump_json(exclude_none=True).encode() + b"\n"


CHUNK_LINE_PREFIX = b'{"type":"chunk",'  # every `chunk_line` starts so: relays need not parse
_AUDIO_KEY = b',"audio":"'
# Strict base64 (3.11+) refuses what a JSON escape would leave in the slice (`\/`, `\u...`).
_STRICT: dict = {"strict_mode": True} if sys.version_info >= (3, 11) else {}


def chunk_line(seq: int, pcm: bytes) -> bytes:
    """Hot-path encoder for a `chunk` frame (equal to `encode_frame(ChunkFrame(...))`)."""
    return (
        CHUNK_LINE_PREFIX
        + b'"seq":%d,"audio":"%s","samples":%d}\n'
        % (seq, base64.b64encode(pcm), len(pcm) // SAMPLE_WIDTH)
    )


def line_type(line: bytes) -> str | None:
    """The frame type of an NDJSON line; chunk lines are recognised without parsing."""
    if line.startswith(CHUNK_LINE_PREFIX):
        return "chunk"
    return frame_type(line)


def chunk_audio(line: bytes) -> bytes:
    """The PCM of a chunk line. Lines shaped exactly as `chunk_line` writes them are read
    by slicing; any other chunk line goes through the full decoder."""
    start = line.find(_AUDIO_KEY, len(CHUNK_LINE_PREFIX))
    if start >= 0:
        start += len(_AUDIO_KEY)
        end = line.find(b'"', start)
        if end >= 0:
            try:
                if _STRICT or line.find(b"\\", start, end) < 0:
                    return binascii.a2b_base64(line[start:end], **_STRICT)
            except binascii.Error:
                pass
    frame = decode_frame(line)
    if not isinstance(frame, ChunkFrame):
        raise FrameDecodeError(f"not a chunk frame: {line[:80]!r}")
    return frame.pcm()


def error_frame(code: ErrorCode | str, message: str, retryable: bool | None = None) -> ErrorFrame:
    """An `error` frame; `retryable` defaults to what the code declares."""
    if retryable is None:
        retryable = ErrorCode.of(code).retryable
    return ErrorFrame(code=str(code), message=message, retryable=retryable)


def error_line(code: ErrorCode, message: str) -> bytes:
    """An `error` frame as one NDJSON line."""
    return encode_frame(error_frame(code, message))
