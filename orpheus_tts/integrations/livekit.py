"""A LiveKit Agents TTS over the gateway's WebSocket (`pip install 'orpheus-tts[livekit]'`).

    from orpheus_tts.integrations.livekit import OrpheusTTS
    session = AgentSession(stt=..., llm=..., tts=OrpheusTTS(base_url="https://tts.example.com",
                                                          api_key="KEY", voice="tara"))

`TTS.stream()` returns a `SynthesizeStream` (`capabilities.streaming` is true) whose pushed
text goes to the server as it arrives; each `flush()` (and `end_input()`) ends one Orpheus
utterance, one LiveKit segment. The server cuts the text at sentence and clause boundaries
and pipelines the segments. `aclose()` of the stream, which is how an agent interrupts it,
cancels the utterance on the server (aborting its engine requests); no frame of it follows.

Each stream owns one session (one WebSocket), closed when the stream ends.
"""

from __future__ import annotations

import asyncio
from typing import Any

from livekit.agents import APIConnectionError, APIConnectOptions, APIError, tts, utils
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS

from orpheus_tts import protocol as p
from orpheus_tts.errors import OrpheusError, StreamError
from orpheus_tts.session import Session, Utterance, session_headers

__all__ = ["OrpheusTTS"]


class OrpheusTTS(tts.TTS):
    def __init__(self, *, base_url: str, api_key: str | None = None, voice: str | None = None,
                 params: dict[str, Any] | None = None):
        super().__init__(capabilities=tts.TTSCapabilities(streaming=True),
                         sample_rate=p.SAMPLE_RATE, num_channels=p.CHANNELS)
        self.base_url = base_url
        self._api_key = api_key
        self.voice = voice
        self.params = dict(params or {})

    @property
    def model(self) -> str:
        return "orpheus"

    @property
    def provider(self) -> str:
        return "orpheus-tts"

    def new_session(self) -> Session:
        return Session(self.base_url, session_headers(self._api_key), voice=self.voice,
                       **self.params)

    def synthesize(self, text: str, *,
                   conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
                   ) -> tts.ChunkedStream:
        return self._synthesize_with_stream(text, conn_options=conn_options)

    def stream(self, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
               ) -> SynthesizeStream:
        return SynthesizeStream(tts=self, conn_options=conn_options)


class SynthesizeStream(tts.SynthesizeStream):
    def __init__(self, *, tts: OrpheusTTS, conn_options: APIConnectOptions):
        super().__init__(tts=tts, conn_options=conn_options)
        self._orpheus = tts

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        output_emitter.initialize(request_id=utils.shortuuid(), sample_rate=p.SAMPLE_RATE,
                                  num_channels=p.CHANNELS, mime_type="audio/pcm", stream=True)
        try:
            async with self._orpheus.new_session() as session:
                opened: asyncio.Queue[Utterance | None] = asyncio.Queue()
                feeder = asyncio.create_task(self._feed(session, opened), name="orpheus-feed")
                try:
                    while (utt := await opened.get()) is not None:
                        output_emitter.start_segment(segment_id=utt.id)
                        try:
                            async for pcm in utt:
                                output_emitter.push(pcm)
                        finally:
                            if not utt.finished:
                                await utt.cancel()
                        output_emitter.end_segment()
                    await feeder
                finally:
                    feeder.cancel()
                    await asyncio.gather(feeder, return_exceptions=True)
        except StreamError as exc:
            raise APIError(f"Orpheus TTS: {exc}", retryable=exc.retryable) from exc
        except (OrpheusError, OSError) as exc:
            raise APIConnectionError(f"Orpheus TTS: {exc}") from exc

    async def _feed(self, session: Session, opened: asyncio.Queue) -> None:
        """Pushed text to the server: one utterance per segment (ended by a flush)."""
        utt: Utterance | None = None
        try:
            async for data in self._input_ch:
                if isinstance(data, self._FlushSentinel):
                    if utt is not None:
                        await utt.end()
                        utt = None
                    continue
                if utt is None:
                    utt = await session.open()
                    await opened.put(utt)
                self._mark_started()
                await utt.send(data)
            if utt is not None:
                await utt.end()
        finally:
            await opened.put(None)
