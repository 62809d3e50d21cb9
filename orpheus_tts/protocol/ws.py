"""WebSocket session (`WS /v1/tts/ws`) messages.

Client -> server: JSON text messages (`speak`, `open`, `append`, `flush`, `end`, `cancel`,
`interrupt`, `close`, `auth`, `ping`). Server -> client: JSON text messages (`ready`,
`started`, `segment`, `done`, `error`, `cancelled`, `pong`) and binary audio frames (see
`encode_ws_audio`). Every utterance that is accepted (a `speak`, or an `open` whose text then
arrives in `append` messages until `end`) ends with exactly one of `done` / `error` /
`cancelled` carrying its `utterance_id`, and no audio for an utterance follows its terminal
message.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from .errors import ErrorCode, RequestError
from .request import clip, parse_json_message, validation_to_request_error

WS_CLOSE_UNAUTHORIZED = 4401  # no valid key (header, `?api_key=` or a first `auth` message)
WS_CLOSE_IDLE = 4408  # nothing happened for the idle timeout
WS_TERMINAL_TYPES = frozenset({"done", "error", "cancelled"})
_WS_ID_MAX_BYTES = 255


class _WsMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def _check_utterance_id(v: str) -> str:
    if len(v.encode("utf-8")) > _WS_ID_MAX_BYTES:
        raise ValueError(f"utterance_id is at most {_WS_ID_MAX_BYTES} bytes of UTF-8")
    return v


UtteranceId = Annotated[str, AfterValidator(_check_utterance_id)]
# One `append` (or Omni `input.text`) message's text. Not a parse-time bound: a longer piece
# fails the utterance it was meant for (text_too_long), so no utterance is spoken with a hole.
WS_MAX_APPEND_CHARS = 4_000
TextPiece = str


def present(**fields: Any) -> dict[str, Any]:
    """The fields that are set (not None), for a request body."""
    return {k: v for k, v in fields.items() if v is not None}


class _UtteranceMessage(_WsMessage):
    utterance_id: UtteranceId = Field(min_length=1)


class WsSpeak(_UtteranceMessage):
    """Speak `text`. Queues behind the active utterance unless `interrupt` is true, which
    cancels the active and queued ones first (each gets its `cancelled`)."""

    type: Literal["speak"]
    text: str
    voice: str | None = None
    model: str | None = None  # a served model name: picks the gateway's pool (see TTSRequest)
    params: dict[str, Any] | None = None  # any other `TTSRequest` field (temperature, seed...)
    interrupt: bool = False

    def tts_body(self) -> dict[str, Any]:
        return {**(self.params or {}), "text": self.text,
                **present(voice=self.voice, model=self.model)}


class WsOpen(_UtteranceMessage):
    """Open an utterance whose text follows in `append` messages and ends with `end`. Queues
    behind the active utterance like `speak`; `interrupt` cancels the others first."""

    type: Literal["open"]
    voice: str | None = None
    params: dict[str, Any] | None = None  # any other `TTSRequest` field, for every segment
    interrupt: bool = False

    def tts_body(self) -> dict[str, Any]:
        """The request every segment is sent as, less its `text`."""
        return {**(self.params or {}), **present(voice=self.voice)}


class WsAppend(_UtteranceMessage):
    """More text for an open utterance, exactly as written (spaces included)."""

    type: Literal["append"]
    text: TextPiece


class WsFlush(_UtteranceMessage):
    """Synthesise what is buffered now, without waiting for a boundary; more text may follow."""

    type: Literal["flush"]


class WsEnd(_UtteranceMessage):
    """No more text: the utterance ends (`done`) once what was sent has been spoken."""

    type: Literal["end"]


class WsInterrupt(_WsMessage):
    """Cancel every queued and speaking utterance of the session (each gets `cancelled`)."""

    type: Literal["interrupt"]


class WsCancel(_WsMessage):
    type: Literal["cancel"]
    utterance_id: UtteranceId


class WsClose(_WsMessage):
    type: Literal["close"]


class WsAuth(_WsMessage):
    """First message of a browser session that could not send a key in a header."""

    type: Literal["auth"]
    api_key: str


class WsPing(_WsMessage):
    type: Literal["ping"]


WsClientMessage = Union[WsSpeak, WsOpen, WsAppend, WsFlush, WsEnd, WsCancel, WsInterrupt,
                        WsClose, WsAuth, WsPing]
_WS_CLIENT_TYPES: dict[str, type[_WsMessage]] = {
    "speak": WsSpeak, "open": WsOpen, "append": WsAppend, "flush": WsFlush, "end": WsEnd,
    "cancel": WsCancel, "interrupt": WsInterrupt, "close": WsClose, "auth": WsAuth,
    "ping": WsPing,
}


def parse_typed_message(raw: str | bytes, types: dict[str, type[BaseModel]]) -> BaseModel:
    """A JSON object whose `type` names one of `types`, validated by that model; raises
    `RequestError` (400 semantics) for anything malformed."""
    obj = parse_json_message(raw)
    if not isinstance(obj, dict):
        raise RequestError(ErrorCode.INVALID_REQUEST, "Message must be a JSON object.")
    cls = types.get(obj.get("type"))  # type: ignore[arg-type]
    if cls is None:
        raise RequestError(
            ErrorCode.INVALID_REQUEST, f"Unknown message type {clip(repr(obj.get('type')))}; "
            f"one of {', '.join(types)}.", param="type")
    try:
        return cls.model_validate(obj)
    except ValidationError as exc:
        raise validation_to_request_error(exc) from None


def parse_ws_message(raw: str | bytes) -> WsClientMessage:
    """One client message; raises `RequestError` (400 semantics) for anything malformed."""
    return parse_typed_message(raw, _WS_CLIENT_TYPES)  # type: ignore[return-value]


class ServerMessage(BaseModel):
    """A message a server sends (a client reads it leniently: unknown fields are ignored);
    each kind narrows `type` to its own name."""

    model_config = ConfigDict(extra="ignore")

    type: str


class WsReady(ServerMessage):
    type: Literal["ready"] = "ready"


class WsStarted(ServerMessage):
    """The utterance left the queue and is being generated (informational)."""

    type: Literal["started"] = "started"
    utterance_id: str


class WsSegment(ServerMessage):
    """Informational, for a streamed-text utterance: segment `index` (the `text` the server cut)
    starts its audio; the audio messages that follow, up to the next `segment` or the
    terminal, are its audio."""

    type: Literal["segment"] = "segment"
    utterance_id: str
    index: int
    text: str


class WsDone(ServerMessage):
    type: Literal["done"] = "done"
    utterance_id: str
    stats: dict[str, Any] = Field(default_factory=dict)  # the `eos` frame's totals


class ErrorMessage(ServerMessage):
    """An `error` message of a WebSocket protocol: an `ErrorCode` value and what went wrong."""

    type: Literal["error"] = "error"
    code: str
    message: str


class WsError(ErrorMessage):
    """Ends an utterance with an error; `utterance_id` is null for a message that could not be
    attributed to an utterance (malformed JSON, duplicate id, cancel of an unknown id)."""

    utterance_id: str | None
    retryable: bool = False


class WsCancelled(ServerMessage):
    """The acknowledgement of a `cancel` (or of an interrupt / close): the utterance is over."""

    type: Literal["cancelled"] = "cancelled"
    utterance_id: str


class WsPong(ServerMessage):
    type: Literal["pong"] = "pong"


WsServerMessage = Union[WsReady, WsStarted, WsSegment, WsDone, WsError, WsCancelled, WsPong]


def encode_ws_audio(utterance_id: str, seq: int, pcm: bytes) -> bytes:
    """A binary audio message: `[u8 n][n bytes utterance_id UTF-8][u32 BE seq][PCM s16le]`.

    The PCM is 24 kHz mono signed 16-bit little-endian, as in `chunk` frames; `seq` counts an
    utterance's audio messages from 0.
    """
    uid = utterance_id.encode("utf-8")
    if len(uid) > _WS_ID_MAX_BYTES:
        raise ValueError("utterance_id too long")
    return b"%c%s%s%s" % (len(uid), uid, seq.to_bytes(4, "big"), pcm)


def decode_ws_audio(data: bytes) -> tuple[str, int, bytes]:
    """(utterance_id, seq, pcm) of a binary audio message."""
    n = data[0]
    if len(data) < 1 + n + 4:
        raise ValueError("truncated audio message")
    uid = data[1 : 1 + n].decode("utf-8")
    seq = int.from_bytes(data[1 + n : 5 + n], "big")
    return uid, seq, data[5 + n :]
