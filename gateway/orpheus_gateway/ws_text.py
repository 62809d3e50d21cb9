"""The gateway side of streamed-text utterances: each segment is one stream over the pool.

`segment_opener()` turns the gateway's `start_stream()` into the `open_segment` callable that
`TextUtterance` synthesises through; `GatewaySegment` reads one worker stream's NDJSON lines
as PCM and ends at its terminal frame (an `error` frame raises `SegmentFailed`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from orpheus_tts import protocol as p

from .core import ActiveStream, Gateway
from .relay import line_type
from .textstream import OpenSegment, SegmentFailed


class GatewaySegment:
    def __init__(self, stream: ActiveStream):
        self.stream = stream

    async def audio(self) -> AsyncIterator[bytes]:
        async with aclosing(self.stream.lines()) as lines:
            async for line in lines:
                kind = line_type(line)
                if kind == "chunk":
                    frame = p.decode_frame(line)
                    assert isinstance(frame, p.ChunkFrame)
                    yield frame.pcm()
                    self.stream.first_audio_sent()
                elif kind == "eos":
                    return
                elif kind == "error":
                    frame = p.decode_frame(line)
                    assert isinstance(frame, p.ErrorFrame)
                    raise SegmentFailed(frame.code, frame.message, bool(frame.retryable))

    async def aclose(self) -> None:
        await self.stream.close()


def segment_opener(gateway: Gateway, body: dict[str, Any], key_id: str,
                   api: str) -> OpenSegment:
    """`open_segment(text)` for an utterance whose every segment is `body` with that text.

    The body is checked once here (voice, parameters), so an utterance with a bad voice is
    refused when it is opened rather than at its first segment.
    """
    gateway.validate({**body, "text": "."})

    async def open_segment(text: str) -> GatewaySegment:
        try:
            request = gateway.validate({**body, "text": text})
            stream = await gateway.start_stream(request, key_id, api, time.monotonic())
        except p.RequestError as exc:
            gateway.count_error(exc.code)
            raise SegmentFailed(exc.code, exc.message, exc.code in p.RETRYABLE_CODES) from None
        return GatewaySegment(stream)

    return open_segment
