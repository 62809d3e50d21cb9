"""WebSocket messages for utterances whose text arrives in pieces (moves into the protocol
package's WebSocket module once it exists)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from orpheus_tts.protocol import _check_utterance_id, _Frame, _WsMessage

WS_MAX_APPEND_CHARS = 4_000  # one `append` message's text


class _UtteranceMessage(_WsMessage):
    utterance_id: str = Field(min_length=1)

    @field_validator("utterance_id")
    @classmethod
    def _utterance_id_fits(cls, v: str) -> str:
        return _check_utterance_id(v)


class WsOpen(_UtteranceMessage):
    """Open an utterance whose text follows in `append` messages and ends with `end`. Queues
    behind the active utterance like `speak`; `interrupt` cancels the others first."""

    type: Literal["open"]
    voice: str | None = None
    params: dict[str, Any] | None = None  # any other `TTSRequest` field, for every segment
    interrupt: bool = False

    def tts_body(self, text: str) -> dict[str, Any]:
        body: dict[str, Any] = dict(self.params or {})
        body["text"] = text
        if self.voice is not None:
            body["voice"] = self.voice
        return body


class WsAppend(_UtteranceMessage):
    """More text for an open utterance, exactly as written (spaces included)."""

    type: Literal["append"]
    text: str = Field(max_length=WS_MAX_APPEND_CHARS)


class WsFlush(_UtteranceMessage):
    """Synthesise what is buffered now, without waiting for a boundary; more text may follow."""

    type: Literal["flush"]


class WsEnd(_UtteranceMessage):
    """No more text: the utterance ends (`done`) once what was sent has been spoken."""

    type: Literal["end"]


class WsInterrupt(_WsMessage):
    """Cancel every queued and speaking utterance of the session (each gets `cancelled`)."""

    type: Literal["interrupt"]


class WsSegment(_Frame):
    """Informational: the server cut `text` from an utterance and started synthesising it."""

    type: Literal["segment"] = "segment"
    utterance_id: str
    index: int
    text: str
