"""`POST /v1/audio/speech`: OpenAI's speech API on top of the v1 stream.

Decisions (see docs/gateway.md): `model` is any non-empty name (one model is served);
`speed` other than 1.0 and a non-empty `instructions` are refused with a 400 naming the
parameter rather than silently ignored (Orpheus takes emotion tags such as `<laugh>` inside
the text instead); unknown parameters are refused by name.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orpheus_tts import protocol as p

from .core import ActiveStream
from .encoders import CONTENT_TYPES, FORMATS, Encoder, make_encoder
from .relay import line_type

SSE_CONTENT_TYPE = "text/event-stream"


class SpeechRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, description="Any name; the gateway serves one model.")
    input: str = Field(min_length=1, description="Text to speak.")
    voice: str = Field(min_length=1, description="A model voice or an OpenAI voice name.")
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: float = Field(default=1.0, ge=0.25, le=4.0, description="Only 1.0 is supported.")
    stream_format: Literal["audio", "sse"] = "audio"
    instructions: str | None = Field(default=None, description="Not supported: must be empty.")


def parse_speech_request(body: Any) -> SpeechRequest:
    if not isinstance(body, dict):
        raise p.RequestError(400, "Request body must be a JSON object.")
    try:
        req = SpeechRequest.model_validate(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err.get("loc", ()))
        if loc == "response_format" and err.get("type") == "literal_error":
            raise p.RequestError(
                400, f"Unsupported response_format {body.get('response_format')!r}; "
                f"supported: {', '.join(FORMATS)}.", p.ErrorCode.UNSUPPORTED_FORMAT,
                param="response_format") from None
        raise p.validation_to_request_error(exc) from None
    if req.speed != 1.0:
        raise p.RequestError(400, "Only speed 1.0 is supported.", param="speed")
    if req.instructions:
        raise p.RequestError(
            400, "'instructions' is not supported; put emotion tags such as <laugh> or <sigh> "
            "in the input text instead.", param="instructions")
    return req


def tts_body(req: SpeechRequest) -> dict[str, Any]:
    """The v1 request the speech request becomes."""
    return {"text": req.input, "voice": req.voice}


# HTTP status for an `error` frame that arrives before any audio (the response is not sent yet).
def status_for_code(code: str) -> int:
    if code == p.ErrorCode.DEADLINE_EXCEEDED:
        return 504
    if code in (p.ErrorCode.INVALID_REQUEST, p.ErrorCode.UNKNOWN_PARAMETER,
                p.ErrorCode.UNKNOWN_VOICE, p.ErrorCode.TEXT_TOO_LONG,
                p.ErrorCode.UNSUPPORTED_FORMAT):
        return 400
    if code in p.RETRYABLE_CODES:
        return 503
    return 502


def early_error(stream: ActiveStream) -> p.RequestError | None:
    """The error to answer with when the worker's first frame is already terminal-with-error."""
    first = stream.upstream.first_line
    if first is None or line_type(first) != "error":
        return None
    frame = p.decode_frame(first)
    assert isinstance(frame, p.ErrorFrame)
    status = status_for_code(frame.code)
    return p.RequestError(status, frame.message, frame.code,
                          retry_after_s=1.0 if status == 503 else None)


class StreamAborted(Exception):
    """Raised inside a raw audio response: the connection is cut so the client sees a
    truncated transfer instead of audio that silently ends early."""


def _encoded(encoder: Encoder, line: bytes) -> bytes:
    """Encoded audio for one line (a chunk's PCM, or the encoder's tail at `eos`)."""
    kind = line_type(line)
    if kind == "chunk":
        frame = p.decode_frame(line)
        assert isinstance(frame, p.ChunkFrame)
        return encoder.encode(frame.pcm())
    if kind == "eos":
        return encoder.finish()
    return b""


async def audio_body(stream: ActiveStream, fmt: str) -> AsyncIterator[bytes]:
    """Raw encoded audio; an error after the response started cuts the connection."""
    encoder = make_encoder(fmt)
    try:
        async with aclosing(stream.lines()) as lines:
            async for line in lines:
                if line_type(line) == "error":
                    raise StreamAborted(json.loads(line).get("code"))
                data = _encoded(encoder, line)
                if data:
                    yield data
                    stream.first_audio_sent()
    finally:
        encoder.close()


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


async def sse_body(stream: ActiveStream, fmt: str) -> AsyncIterator[bytes]:
    """`speech.audio.delta` events (base64 of the encoded format), then `speech.audio.done`
    or an `error` event."""
    encoder = make_encoder(fmt)
    try:
        async with aclosing(stream.lines()) as lines:
            async for line in lines:
                data = _encoded(encoder, line)
                if data:
                    audio = base64.b64encode(data).decode()
                    yield _sse({"type": "speech.audio.delta", "audio": audio})
                    stream.first_audio_sent()
                kind = line_type(line)
                if kind == "eos":
                    eos = p.decode_frame(line)
                    stats = eos.model_dump(exclude_none=True, exclude={"type"}) if eos else {}
                    yield _sse({"type": "speech.audio.done", "stats": stats})
                elif kind == "error":
                    frame = p.decode_frame(line)
                    assert isinstance(frame, p.ErrorFrame)
                    body = p.error_body(status_for_code(frame.code), frame.message, frame.code)
                    yield _sse({"type": "error", **body})
    finally:
        encoder.close()


def content_type(req: SpeechRequest) -> str:
    return SSE_CONTENT_TYPE if req.stream_format == "sse" else CONTENT_TYPES[req.response_format]


def body_for(req: SpeechRequest, stream: ActiveStream) -> AsyncIterator[bytes]:
    if req.stream_format == "sse":
        return sse_body(stream, req.response_format)
    return audio_body(stream, req.response_format)

