"""The gateway side of streamed-text utterances: each segment is one stream over the pool.

`segment_opener()` turns the gateway's `start_stream()` into the `open_segment` callable that
`TextUtterance` synthesises through; `GatewaySegment` reads one worker stream's NDJSON lines
as PCM and ends at its terminal frame (an `error` frame raises `SegmentFailed`).
`open_text_utterance()` and `text_message()` are what `WS /v1/tts/ws` does with `open` and
with `append` / `flush` / `end`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any

from orpheus_tts import protocol as p

from .core import ActiveStream, Gateway
from .error_shapes import ws_error
from .textstream import (Cancelled, Done, OpenSegment, SegmentFailed, Terminal, TextUtterance,
                         UtteranceClosed)


class GatewaySegment:
    def __init__(self, stream: ActiveStream):
        self.stream = stream

    async def audio(self) -> AsyncIterator[bytes]:
        async with aclosing(self.stream.lines()) as lines:
            async for line in lines:
                kind = p.line_type(line)
                if kind == "chunk":
                    yield p.chunk_audio(line)
                    self.stream.first_audio_sent()
                elif kind == "eos":
                    return
                elif kind == "error":
                    frame = p.decode_frame(line)
                    assert isinstance(frame, p.ErrorFrame)
                    raise SegmentFailed(frame.error_code, frame.message, frame.retryable)

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
            raise SegmentFailed(exc.code, exc.message, exc.code.retryable) from None
        return GatewaySegment(stream)

    return open_segment


def terminal_message(utterance_id: str, terminal: Terminal) -> p.WsServerMessage:
    if isinstance(terminal, Done):
        return p.WsDone(utterance_id=utterance_id, stats=terminal.stats)
    if isinstance(terminal, Cancelled):
        return p.WsCancelled(utterance_id=utterance_id)
    return ws_error(utterance_id, p.ErrorCode.of(terminal.code), terminal.message,
                    retryable=terminal.retryable)


def open_text_utterance(gateway: Gateway, msg: p.WsOpen, key_id: str, *,
                        send: Callable[[p.WsServerMessage], Awaitable[None]],
                        send_audio: Callable[[int, bytes], Awaitable[bool]],
                        finish: Callable[[p.WsServerMessage], Awaitable[object]],
                        ) -> TextUtterance:
    """The pipeline for an `open`: raises `RequestError` if its voice or parameters are bad.
    Audio goes out numbered from 0; `segment` notes precede each segment's audio."""
    opener = segment_opener(gateway, msg.tts_body(), key_id, "ws")
    seq = 0

    async def on_audio(pcm: bytes) -> bool:
        nonlocal seq
        sent = await send_audio(seq, pcm)
        seq += 1
        return sent

    async def on_end(terminal: Terminal) -> None:
        await finish(terminal_message(msg.utterance_id, terminal))

    async def on_segment(index: int, text: str | None) -> None:
        if text is not None:
            await send(p.WsSegment(utterance_id=msg.utterance_id, index=index, text=text))

    return TextUtterance(opener, on_audio, on_end, on_segment=on_segment,
                         max_segment_chars=gateway.config.max_text_chars)


def text_message(text: TextUtterance | None,
                 msg: p.WsAppend | p.WsFlush | p.WsEnd) -> str | None:
    """Apply `append` / `flush` / `end` to an open utterance; the problem, if it cannot be."""
    if text is None:
        return f"No open utterance '{msg.utterance_id}' takes text."
    try:
        if isinstance(msg, p.WsAppend):
            text.append(msg.text)
        elif isinstance(msg, p.WsFlush):
            text.flush()
        else:
            text.end()
    except UtteranceClosed:
        return f"Utterance '{msg.utterance_id}' has ended; it takes no more text."
    return None
