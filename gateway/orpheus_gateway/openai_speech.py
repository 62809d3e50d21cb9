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

from .core import ActiveStream, StreamAborted
from .encoders import CONTENT_TYPES, FORMATS, Encoder, make_encoder
from .error_shapes import refusal_from_frame, sse_error, sse_event

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
        raise p.RequestError(p.ErrorCode.INVALID_REQUEST, "Request body must be a JSON object.")
    try:
        req = SpeechRequest.model_validate(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err.get("loc", ()))
        if loc == "response_format" and err.get("type") == "literal_error":
            raise p.RequestError(
                p.ErrorCode.UNSUPPORTED_FORMAT,
                f"Unsupported response_format {body.get('response_format')!r}; "
                f"supported: {', '.join(FORMATS)}.", param="response_format") from None
        raise p.validation_to_request_error(exc) from None
    if req.speed != 1.0:
        raise p.RequestError(p.ErrorCode.INVALID_REQUEST, "Only speed 1.0 is supported.",
                             param="speed")
    if req.instructions:
        raise p.RequestError(
            p.ErrorCode.INVALID_REQUEST, "'instructions' is not supported; put emotion tags such as <laugh> or <sigh> "
            "in the input text instead.", param="instructions")
    return req


def tts_body(req: SpeechRequest) -> dict[str, Any]:
    """The v1 request the speech request becomes."""
    return {"text": req.input, "voice": req.voice}


def early_error(stream: ActiveStream) -> p.RequestError | None:
    """The refusal to answer with when the worker's first frame is already an error."""
    first = stream.upstream.first_line
    if first is None or p.line_type(first) != "error":
        return None
    frame = p.decode_frame(first)
    assert isinstance(frame, p.ErrorFrame)
    return refusal_from_frame(frame)


def _encoded(encoder: Encoder, kind: str | None, line: bytes) -> bytes:
    """Encoded audio for one line (a chunk's PCM, or the encoder's tail at `eos`)."""
    if kind == "chunk":
        return encoder.encode(p.chunk_audio(line))
    if kind == "eos":
        return encoder.finish()
    return b""


async def audio_body(stream: ActiveStream, fmt: str) -> AsyncIterator[bytes]:
    """Raw encoded audio; an error after the response started cuts the connection."""
    encoder = make_encoder(fmt)
    try:
        async with aclosing(stream.lines()) as lines:
            async for line in lines:
                kind = p.line_type(line)
                if kind == "error":
                    raise StreamAborted(json.loads(line).get("code"))
                data = _encoded(encoder, kind, line)
                if data:
                    yield data
                    stream.first_audio_sent()
    finally:
        encoder.close()


async def sse_body(stream: ActiveStream, fmt: str) -> AsyncIterator[bytes]:
    """`speech.audio.delta` events (base64 of the encoded format), then `speech.audio.done`
    or an `error` event."""
    encoder = make_encoder(fmt)
    try:
        async with aclosing(stream.lines()) as lines:
            async for line in lines:
                kind = p.line_type(line)
                data = _encoded(encoder, kind, line)
                if data:
                    audio = base64.b64encode(data).decode()
                    yield sse_event({"type": "speech.audio.delta", "audio": audio})
                    stream.first_audio_sent()
                if kind == "eos":
                    eos = p.decode_frame(line)
                    stats = eos.model_dump(exclude_none=True, exclude={"type"}) if eos else {}
                    yield sse_event({"type": "speech.audio.done", "stats": stats})
                elif kind == "error":
                    frame = p.decode_frame(line)
                    assert isinstance(frame, p.ErrorFrame)
                    yield sse_error(frame.error_code, frame.message)
    finally:
        encoder.close()


def content_type(req: SpeechRequest) -> str:
    return SSE_CONTENT_TYPE if req.stream_format == "sse" else CONTENT_TYPES[req.response_format]


def body_for(req: SpeechRequest, stream: ActiveStream) -> AsyncIterator[bytes]:
    if req.stream_format == "sse":
        return sse_body(stream, req.response_format)
    return audio_body(stream, req.response_format)

