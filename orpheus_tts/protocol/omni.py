"""vLLM-Omni's streaming-text speech WebSocket (`WS /v1/audio/speech/stream`), as served here.

Client -> server (JSON text): `session.config` (first; stays in effect for the connection),
`input.text` (text as it is written), `input.done` (ends the current utterance: what was sent
is spoken, the connection stays open for the next one), `session.close`.

Server -> client, per utterance: for each sentence (segment) the server cut, `audio.start`,
its audio as binary messages (one whole file per sentence, or raw PCM chunks as they come with
`stream_audio`), `audio.done`; then exactly one `session.done`. `error` reports a refused
message (the session goes on) or a failed utterance (then its `session.done` follows).

Orpheus speaks 24 kHz mono s16le; `response_format` is `pcm` or `wav`, `speed` 1.0 only, and
voice cloning fields (`ref_audio`, ...) are refused as unknown fields.
"""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from .errors import ErrorCode, RequestError
from .frames import SAMPLE_RATE
from .ws import ErrorMessage, ServerMessage, TextPiece, parse_typed_message, present

OMNI_SPEECH_STREAM_PATH = "/v1/audio/speech/stream"
OMNI_FORMATS = ("pcm", "wav")


class _OmniMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class OmniSessionConfig(_OmniMessage):
    type: Literal["session.config"]
    model: str | None = None
    voice: str | None = Field(default=None, validation_alias=AliasChoices("voice", "speaker"))
    language: str | None = None
    response_format: str = "wav"
    speed: float = 1.0
    stream_audio: bool = False
    split_granularity: Literal["sentence", "clause", "none"] = "sentence"
    max_new_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    seed: int | None = None

    @field_validator("response_format")
    @classmethod
    def _supported_format(cls, v: str) -> str:
        if v not in OMNI_FORMATS:
            raise ValueError(f"response_format is pcm or wav here (24 kHz mono), not {v!r}")
        return v

    @field_validator("speed")
    @classmethod
    def _normal_speed(cls, v: float) -> float:
        if v != 1.0:
            raise ValueError("Orpheus speaks at speed 1.0 only")
        return v

    def tts_body(self) -> dict[str, Any]:
        """The v1 request fields every segment is sent with (less `text`)."""
        return present(voice=self.voice, max_tokens=self.max_new_tokens,
                       temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
                       repetition_penalty=self.repetition_penalty, seed=self.seed)


class OmniInputText(_OmniMessage):
    type: Literal["input.text"]
    text: TextPiece


class OmniInputDone(_OmniMessage):
    type: Literal["input.done"]


class OmniSessionClose(_OmniMessage):
    type: Literal["session.close"]


OmniClientMessage = Union[OmniSessionConfig, OmniInputText, OmniInputDone, OmniSessionClose]
_OMNI_TYPES: dict[str, type[_OmniMessage]] = {
    "session.config": OmniSessionConfig, "input.text": OmniInputText,
    "input.done": OmniInputDone, "session.close": OmniSessionClose,
}


def parse_omni_message(raw: str | bytes) -> OmniClientMessage:
    """One client message; raises `RequestError` for anything malformed or unsupported."""
    try:
        return parse_typed_message(raw, _OMNI_TYPES)  # type: ignore[return-value]
    except RequestError as exc:
        if exc.param == "response_format":
            raise RequestError(ErrorCode.UNSUPPORTED_FORMAT, exc.message, param=exc.param) \
                from None
        raise


class _OmniUtteranceMessage(ServerMessage):
    utterance_index: int


class _OmniSentenceMessage(_OmniUtteranceMessage):
    sentence_index: int


class OmniAudioStart(_OmniSentenceMessage):
    type: Literal["audio.start"] = "audio.start"
    sentence_text: str
    format: str
    sample_rate: int = SAMPLE_RATE


class OmniAudioDone(_OmniSentenceMessage):
    type: Literal["audio.done"] = "audio.done"
    total_bytes: int
    error: bool = False


class OmniSessionDone(_OmniUtteranceMessage):
    """The one terminal message of an utterance (after an `error`, if it failed)."""

    type: Literal["session.done"] = "session.done"
    total_sentences: int
    error: bool = False


class OmniError(ErrorMessage):
    utterance_index: int | None = None


OmniServerMessage = Union[OmniAudioStart, OmniAudioDone, OmniSessionDone, OmniError]
