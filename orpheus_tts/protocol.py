"""The v1 wire contract, defined once and imported by the SDK, the gateway and the worker.

`docs/protocol.md` is the prose version of this module. A stream is
`POST /v1/tts/stream` with a JSON `TTSRequest`; the answer is NDJSON, one frame per line:
`chunk`* interleaved with `metrics`+, then exactly one terminal frame (`eos` or `error`)
and nothing after it. Readers ignore unknown frame types and unknown fields.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# --- audio -------------------------------------------------------------------------------------
SAMPLE_RATE = 24_000
SAMPLE_WIDTH = 2  # bytes, signed 16-bit little-endian
CHANNELS = 1

# --- HTTP --------------------------------------------------------------------------------------
STREAM_PATH = "/v1/tts/stream"
SYSTEM_PATH = "/v1/system"
VOICES_PATH = "/v1/voices"
NDJSON = "application/x-ndjson"

HEADER_REQUEST_ID = "X-Request-ID"
HEADER_QUEUE_DEPTH = "X-Orpheus-Queue-Depth"
HEADER_INFLIGHT = "X-Orpheus-Inflight"
HEADER_WORKER_ID = "X-Orpheus-Worker"
HEADER_RETRY_AFTER = "Retry-After"

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_TIMEOUT_S = 300.0
DEFAULT_MAX_TEXT_CHARS = 4_000
MIN_REPETITION_PENALTY = 1.1  # below this Orpheus audio degrades; the contract rejects it


# --- error codes -------------------------------------------------------------------------------
class ErrorCode:
    """Codes carried by `error` frames and by OpenAI-shaped error bodies."""

    INVALID_REQUEST = "invalid_request"
    UNKNOWN_PARAMETER = "unknown_parameter"
    UNKNOWN_VOICE = "unknown_voice"
    TEXT_TOO_LONG = "text_too_long"
    UNSUPPORTED_FORMAT = "unsupported_format"
    UNAUTHORIZED = "invalid_api_key"
    RATE_LIMITED = "rate_limit_exceeded"
    OVERLOADED = "overloaded"
    DRAINING = "draining"
    NO_WORKERS = "no_workers"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    UPSTREAM_LOST = "upstream_lost"
    CANCELLED = "cancelled"
    ENGINE_ERROR = "engine_error"
    INTERNAL = "internal_error"


RETRYABLE_CODES = frozenset(
    {
        ErrorCode.OVERLOADED,
        ErrorCode.DRAINING,
        ErrorCode.NO_WORKERS,
        ErrorCode.UPSTREAM_LOST,
        ErrorCode.RATE_LIMITED,
        ErrorCode.ENGINE_ERROR,
    }
)

# HTTP status -> OpenAI error `type`.
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable_error",
}


def error_body(
    status: int, message: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """OpenAI's error body: `{"error": {"message", "type", "code", "param"}}`."""
    etype = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": etype, "code": code, "param": param}}


class RequestError(Exception):
    """A request the server refuses before streaming; carries everything for the HTTP answer."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str = ErrorCode.INVALID_REQUEST,
        param: str | None = None,
        retry_after_s: float | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.retry_after_s = retry_after_s

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, self.code, self.param)

    def headers(self) -> dict[str, str]:
        if self.retry_after_s is None:
            return {}
        return {HEADER_RETRY_AFTER: str(max(1, int(round(self.retry_after_s))))}


# --- request -----------------------------------------------------------------------------------
class TTSRequest(BaseModel):
    """Body of `POST /v1/tts/stream`. Unknown keys are refused by name."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    text: str = Field(min_length=1, description="Text to speak; at most the server's limit.")
    voice: str | None = Field(default=None, description="Voice name or OpenAI alias.")
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0, description="0 disables top-k.")
    max_tokens: int | None = Field(default=None, ge=1, le=65_536)
    repetition_penalty: float | None = Field(default=None, ge=MIN_REPETITION_PENALTY, le=2.0)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    timeout_s: float | None = Field(default=None, gt=0.0, description="Capped by the server.")
    request_id: str | None = Field(default=None, max_length=128)

    @field_validator("text")
    @classmethod
    def _text_not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("text must contain something to speak")
        return v

    def sampling(self) -> dict[str, Any]:
        """The sampling parameters the caller set (unset ones are left to the engine)."""
        keys = ("temperature", "top_p", "top_k", "max_tokens", "repetition_penalty", "seed")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


REQUEST_FIELDS = frozenset(TTSRequest.model_fields)


def validation_to_request_error(exc: ValidationError) -> RequestError:
    """Turn pydantic's first complaint into a 400 that names the parameter."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ())) or None
    if err.get("type") == "extra_forbidden":
        return RequestError(
            400, f"Unknown parameter: '{loc}'.", ErrorCode.UNKNOWN_PARAMETER, param=loc
        )
    if err.get("type") == "missing":
        return RequestError(400, f"Missing required parameter: '{loc}'.", param=loc)
    return RequestError(400, f"Invalid value for '{loc}': {err.get('msg')}.", param=loc)


def parse_request(
    body: Any,
    *,
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS,
    max_timeout_s: float = DEFAULT_MAX_TIMEOUT_S,
) -> TTSRequest:
    """Validate a decoded JSON body against the contract and the server's limits.

    Raises `RequestError` (a 4xx) for anything wrong; never anything else.
    """
    if not isinstance(body, dict):
        raise RequestError(400, "Request body must be a JSON object.")
    try:
        req = TTSRequest.model_validate(body)
    except ValidationError as exc:
        raise validation_to_request_error(exc) from None
    if len(req.text) > max_text_chars:
        raise RequestError(
            400,
            f"'text' is {len(req.text)} characters; the limit is {max_text_chars}.",
            ErrorCode.TEXT_TOO_LONG,
            param="text",
        )
    if req.timeout_s is not None and req.timeout_s > max_timeout_s:
        req = req.model_copy(update={"timeout_s": max_timeout_s})
    return req


def parse_request_bytes(raw: bytes, **limits: Any) -> TTSRequest:
    """`parse_request` for a raw body: invalid JSON is a 400 too."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise RequestError(400, "Request body is not valid JSON.") from None
    return parse_request(body, **limits)


# --- frames ------------------------------------------------------------------------------------
class _Frame(BaseModel):
    model_config = ConfigDict(extra="allow")


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


class ErrorFrame(_Frame):
    type: Literal["error"] = "error"
    code: str
    message: str
    retryable: bool = False


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


def chunk_line(seq: int, pcm: bytes) -> bytes:
    """Hot-path encoder for a `chunk` frame (equal to `encode_frame(ChunkFrame(...))`)."""
    audio = base64.b64encode(pcm).decode("ascii")
    return (
        b'{"type":"chunk","seq":%d,"audio":"%s","samples":%d}\n'
        % (seq, audio.encode("ascii"), len(pcm) // SAMPLE_WIDTH)
    )


def error_frame(code: str, message: str, retryable: bool | None = None) -> ErrorFrame:
    if retryable is None:
        retryable = code in RETRYABLE_CODES
    return ErrorFrame(code=code, message=message, retryable=retryable)


def load_headers(queue_depth: int, inflight: int) -> dict[str, str]:
    """Load hints as response headers, readable before the first frame."""
    return {HEADER_QUEUE_DEPTH: str(queue_depth), HEADER_INFLIGHT: str(inflight)}


def pcm_seconds(samples: int) -> float:
    return samples / SAMPLE_RATE


# --- /v1/system --------------------------------------------------------------------------------
class WorkerState(BaseModel):
    """One worker as the gateway sees it."""

    model_config = ConfigDict(extra="allow")

    id: str
    url: str
    ready: bool
    inflight: int = 0
    queue_depth: int = 0
    capacity: int | None = None
    breaker: Literal["closed", "open", "half_open"] = "closed"


class SystemSnapshot(BaseModel):
    """`GET /v1/system` on a worker (`role="worker"`) or a gateway (`role="gateway"`).

    The autoscaler reads a gateway's snapshot: `queue_depth` is requests waiting anywhere
    (gateway queue plus workers' queues), `inflight` the streams being generated, and the
    time-to-first-audio percentiles cover the last `window_s` seconds.
    """

    model_config = ConfigDict(extra="allow")

    role: Literal["worker", "gateway"]
    ready: bool
    queue_depth: int = 0
    inflight: int = 0
    capacity: int | None = None
    ttfa_p50_ms: float | None = None
    ttfa_p95_ms: float | None = None
    window_s: float | None = None
    model: str | None = None
    voices: list[str] = Field(default_factory=list)
    workers: list[WorkerState] = Field(default_factory=list)
