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
REQUEST_ID_PATTERN = r"^[\x21-\x7e]{1,128}$"  # visible ASCII: usable as a header value anywhere


def is_valid_request_id(value: str) -> bool:
    return 0 < len(value) <= 128 and all(33 <= ord(c) <= 126 for c in value)


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
    request_id: str | None = Field(
        default=None, pattern=REQUEST_ID_PATTERN,
        description="1-128 visible ASCII characters; echoed in X-Request-ID.")

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


CHUNK_LINE_PREFIX = b'{"type":"chunk",'  # every `chunk_line` starts so: relays need not parse


def chunk_line(seq: int, pcm: bytes) -> bytes:
    """Hot-path encoder for a `chunk` frame (equal to `encode_frame(ChunkFrame(...))`)."""
    audio = base64.b64encode(pcm).decode("ascii")
    return (
        CHUNK_LINE_PREFIX
        + b'"seq":%d,"audio":"%s","samples":%d}\n'
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


# --- WebSocket session (`WS /v1/tts/ws`) -------------------------------------------------------
# Client -> server: JSON text messages (`speak`, `cancel`, `close`, `auth`, `ping`).
# Server -> client: JSON text messages (`ready`, `started`, `done`, `error`, `cancelled`,
# `pong`) and binary audio frames (see `encode_ws_audio`). Every `speak` that is accepted
# ends with exactly one of `done` / `error` / `cancelled` carrying its `utterance_id`, and no
# audio for an utterance follows its terminal message.
WS_PATH = "/v1/tts/ws"
WS_CLOSE_UNAUTHORIZED = 4401  # no valid key (header, `?api_key=` or a first `auth` message)
WS_CLOSE_IDLE = 4408  # nothing happened for the idle timeout
WS_TERMINAL_TYPES = frozenset({"done", "error", "cancelled"})
_WS_ID_MAX_BYTES = 255


class _WsMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_utterance_id(v: str) -> str:
    if len(v.encode("utf-8")) > _WS_ID_MAX_BYTES:
        raise ValueError(f"utterance_id is at most {_WS_ID_MAX_BYTES} bytes of UTF-8")
    return v


class WsSpeak(_WsMessage):
    """Speak `text`. Queues behind the active utterance unless `interrupt` is true, which
    cancels the active and queued ones first (each gets its `cancelled`)."""

    type: Literal["speak"]
    utterance_id: str = Field(min_length=1)
    text: str
    voice: str | None = None
    params: dict[str, Any] | None = None  # any other `TTSRequest` field (temperature, seed...)
    interrupt: bool = False

    @field_validator("utterance_id")
    @classmethod
    def _utterance_id_fits(cls, v: str) -> str:
        return _check_utterance_id(v)

    def tts_body(self) -> dict[str, Any]:
        body: dict[str, Any] = dict(self.params or {})
        body["text"] = self.text
        if self.voice is not None:
            body["voice"] = self.voice
        return body


class WsCancel(_WsMessage):
    type: Literal["cancel"]
    utterance_id: str


class WsClose(_WsMessage):
    type: Literal["close"]


class WsAuth(_WsMessage):
    """First message of a browser session that could not send a key in a header."""

    type: Literal["auth"]
    api_key: str


class WsPing(_WsMessage):
    type: Literal["ping"]


WsClientMessage = Union[WsSpeak, WsCancel, WsClose, WsAuth, WsPing]
_WS_CLIENT_TYPES: dict[str, type[_WsMessage]] = {
    "speak": WsSpeak, "cancel": WsCancel, "close": WsClose, "auth": WsAuth, "ping": WsPing,
}


def parse_ws_message(raw: str | bytes) -> WsClientMessage:
    """One client message; raises `RequestError` (400 semantics) for anything malformed."""
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise RequestError(400, "Message is not valid JSON.") from None
    if not isinstance(obj, dict):
        raise RequestError(400, "Message must be a JSON object.")
    cls = _WS_CLIENT_TYPES.get(obj.get("type"))  # type: ignore[arg-type]
    if cls is None:
        raise RequestError(
            400, f"Unknown message type {obj.get('type')!r}; one of "
            f"{', '.join(_WS_CLIENT_TYPES)}.", param="type")
    try:
        return cls.model_validate(obj)  # type: ignore[return-value]
    except ValidationError as exc:
        raise validation_to_request_error(exc) from None


class WsReady(_Frame):
    type: Literal["ready"] = "ready"


class WsStarted(_Frame):
    """The utterance left the queue and is being generated (informational)."""

    type: Literal["started"] = "started"
    utterance_id: str


class WsDone(_Frame):
    type: Literal["done"] = "done"
    utterance_id: str
    stats: dict[str, Any] = Field(default_factory=dict)  # the `eos` frame's totals


class WsError(_Frame):
    """Ends an utterance with an error; `utterance_id` is null for a message that could not be
    attributed to an utterance (malformed JSON, duplicate id, cancel of an unknown id)."""

    type: Literal["error"] = "error"
    utterance_id: str | None
    code: str
    message: str
    retryable: bool = False


class WsCancelled(_Frame):
    """The acknowledgement of a `cancel` (or of an interrupt / close): the utterance is over."""

    type: Literal["cancelled"] = "cancelled"
    utterance_id: str


class WsPong(_Frame):
    type: Literal["pong"] = "pong"


def encode_ws_audio(utterance_id: str, seq: int, pcm: bytes) -> bytes:
    """A binary audio message: `[u8 n][n bytes utterance_id UTF-8][u32 BE seq][PCM s16le]`.

    The PCM is 24 kHz mono signed 16-bit little-endian, as in `chunk` frames; `seq` counts an
    utterance's audio messages from 0.
    """
    uid = utterance_id.encode("utf-8")
    if len(uid) > _WS_ID_MAX_BYTES:
        raise ValueError("utterance_id too long")
    return bytes([len(uid)]) + uid + seq.to_bytes(4, "big") + pcm


def decode_ws_audio(data: bytes) -> tuple[str, int, bytes]:
    """(utterance_id, seq, pcm) of a binary audio message."""
    n = data[0]
    if len(data) < 1 + n + 4:
        raise ValueError("truncated audio message")
    uid = data[1 : 1 + n].decode("utf-8")
    seq = int.from_bytes(data[1 + n : 5 + n], "big")
    return uid, seq, data[5 + n :]
