"""`POST /v1/audio/speech` (and Groq's `/openai/v1/audio/speech`): OpenAI's speech API, with
Groq's additions, on top of the v1 stream.

Decisions (see docs/gateway.md): `model` must be a name the gateway serves, and picks the
model pool (`pools`);
`speed` (0.25-4.0) is a pitch-preserving time-stretch and `sample_rate` (Groq's, 8000-48000)
a resample, both streaming (`audio.PcmPipeline`); `instructions` become Orpheus emotion tags
where they name one, else are ignored, and `X-Orpheus-Instructions` says which
(`instructions`); `voice` is a name or OpenAI's voice object `{"id": ...}`; the SSE
`speech.audio.done` event carries `usage` (the worker's token counts) and our `stats`;
unknown parameters are refused by name.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orpheus_tts import protocol as p

from .audio import MAX_SAMPLE_RATE, MAX_SPEED, MIN_SAMPLE_RATE, MIN_SPEED, PcmPipeline
from .core import ActiveStream, StreamAborted
from .encoders import CONTENT_TYPES, FORMATS, Encoder, make_encoder
from .instructions import HEADER as INSTRUCTIONS_HEADER
from .instructions import apply_instructions
from .error_shapes import refusal_from_frame, sse_error, sse_event

SSE_CONTENT_TYPE = "text/event-stream"


class VoiceObject(BaseModel):
    """OpenAI's voice-object form, `{"id": "..."}` (custom voices)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)


class SpeechRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    model: str = Field(min_length=1, max_length=256,
                       description="A served model name (GET /v1/models).")
    input: str = Field(min_length=1, description="Text to speak.")
    voice: str | VoiceObject = Field(
        description="A model voice, an OpenAI or Groq voice name, or {\"id\": voice}.")
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm", "ogg", "mulaw"] = "mp3"
    speed: float = Field(default=1.0, ge=MIN_SPEED, le=MAX_SPEED,
                         description="Tempo, pitch kept (time-stretch).")
    stream_format: Literal["audio", "sse"] = "audio"
    instructions: str | None = Field(
        default=None, max_length=4096,
        description="Emotion words become Orpheus tags; else ignored "
        "(the X-Orpheus-Instructions response header says which).")
    sample_rate: int | None = Field(default=None, ge=MIN_SAMPLE_RATE, le=MAX_SAMPLE_RATE,
                                    description="Output rate (Groq's parameter); default 24000.")

    @property
    def voice_name(self) -> str:
        return self.voice.id if isinstance(self.voice, VoiceObject) else self.voice

    @property
    def output_rate(self) -> int:
        return self.sample_rate or p.SAMPLE_RATE


def parse_speech_request(body: Any) -> SpeechRequest:
    if not isinstance(body, dict):
        raise p.RequestError(p.ErrorCode.INVALID_REQUEST, "Request body must be a JSON object.")
    try:
        req = SpeechRequest.model_validate(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err.get("loc", ()))
        if loc.startswith("voice."):  # a bad string or voice object: one complaint, about `voice`
            raise p.RequestError(p.ErrorCode.INVALID_REQUEST, "'voice' must be a voice name or "
                                 "an object {\"id\": voice name}.", param="voice") from None
        if loc == "response_format" and err.get("type") == "literal_error":
            raise p.RequestError(
                p.ErrorCode.UNSUPPORTED_FORMAT,
                f"Unsupported response_format {p.clip(repr(body.get('response_format')))}; "
                f"supported: {', '.join(FORMATS)}.", param="response_format") from None
        raise p.validation_to_request_error(exc) from None
    if not req.voice_name.strip():
        raise p.RequestError(p.ErrorCode.INVALID_REQUEST, "'voice' must name a voice.",
                             param="voice")
    return req


def tts_body(req: SpeechRequest) -> tuple[dict[str, Any], dict[str, str]]:
    """The v1 request the speech request becomes, and the response headers that say how."""
    applied = apply_instructions(req.input, req.instructions)
    headers = {INSTRUCTIONS_HEADER: applied.header} if req.instructions else {}
    return {"text": applied.text, "voice": req.voice_name, "model": req.model}, headers


def early_error(stream: ActiveStream) -> p.RequestError | None:
    """The refusal to answer with when the worker's first frame is already an error."""
    first = stream.upstream.first_line
    if first is None or p.line_type(first) != "error":
        return None
    frame = p.decode_frame(first)
    assert isinstance(frame, p.ErrorFrame)
    return refusal_from_frame(frame)


class Output:
    """The worker's PCM as the client asked for it: tempo and rate (`PcmPipeline`), then the
    format's encoder."""

    def __init__(self, req: SpeechRequest) -> None:
        self.pipeline = PcmPipeline(req.speed, req.output_rate)
        self.encoder: Encoder = make_encoder(req.response_format, req.output_rate)

    def line(self, kind: str | None, line: bytes) -> bytes:
        """Encoded audio for one line (a chunk's PCM, or every tail at `eos`)."""
        if kind == "chunk":
            return self.encoder.encode(self.pipeline.process(p.chunk_audio(line)))
        if kind == "eos":
            return self.encoder.encode(self.pipeline.flush()) + self.encoder.finish()
        return b""

    def close(self) -> None:
        self.encoder.close()


def usage(eos: p.EosFrame) -> dict[str, int]:
    """OpenAI's `usage` from the worker's token counts (0 where a server gave none)."""
    read, generated = eos.prompt_tokens or 0, eos.tokens or 0
    return {"input_tokens": read, "output_tokens": generated, "total_tokens": read + generated}


async def audio_body(stream: ActiveStream, req: SpeechRequest) -> AsyncIterator[bytes]:
    """Raw encoded audio; an error after the response started cuts the connection. What `eos`
    brings (the encoder's tail, maybe nothing) is one piece, the body's last."""
    encoder = Output(req)
    try:
        async with aclosing(stream.lines()) as lines:
            async for line in lines:
                kind = p.line_type(line)
                if kind == "error":
                    raise StreamAborted(json.loads(line).get("code"))
                data = encoder.line(kind, line)
                if data or kind == "eos":
                    yield data
                    if data:
                        stream.first_audio_sent()
    finally:
        encoder.close()


async def sse_body(stream: ActiveStream, req: SpeechRequest) -> AsyncIterator[bytes]:
    """`speech.audio.delta` events (base64 of the encoded format), then `speech.audio.done`
    or an `error` event. The events of the terminal frame (the tail's delta with the `done`)
    are one piece, the body's last."""
    encoder = Output(req)
    try:
        async with aclosing(stream.lines()) as lines:
            async for line in lines:
                kind = p.line_type(line)
                data = encoder.line(kind, line)
                events = []
                if data:
                    audio = base64.b64encode(data).decode()
                    events.append(sse_event({"type": "speech.audio.delta", "audio": audio}))
                if kind == "eos":
                    eos = p.decode_frame(line)
                    assert isinstance(eos, p.EosFrame)
                    stats = eos.model_dump(exclude_none=True, exclude={"type"})
                    events.append(sse_event({"type": "speech.audio.done", "usage": usage(eos),
                                             "stats": stats}))
                elif kind == "error":
                    frame = p.decode_frame(line)
                    assert isinstance(frame, p.ErrorFrame)
                    events.append(sse_error(frame.error_code, frame.message))
                if events:
                    yield b"".join(events)
                    if data:
                        stream.first_audio_sent()
    finally:
        encoder.close()


def content_type(req: SpeechRequest) -> str:
    return SSE_CONTENT_TYPE if req.stream_format == "sse" else CONTENT_TYPES[req.response_format]


def body_for(req: SpeechRequest, stream: ActiveStream) -> AsyncIterator[bytes]:
    if req.stream_format == "sse":
        return sse_body(stream, req)
    return audio_body(stream, req)

