"""A Pipecat TTS service over the gateway's WebSocket (`pip install 'orpheus-tts[pipecat]'`).

    from orpheus_tts.integrations.pipecat import OrpheusTTSService
    tts = OrpheusTTSService(base_url="https://tts.example.com", api_key="KEY", voice="tara")
    pipeline = Pipeline([transport.input(), stt, user_agg, llm, tts, transport.output(), ...])

The LLM's tokens go to the server as they are written (Pipecat's TOKEN aggregation): each
Pipecat turn is one Orpheus utterance (`open`, `append`..., `end` at the turn's end), and the
server cuts the text at sentence and clause boundaries and pipelines the segments. Audio
comes back as 24 kHz mono `TTSAudioRawFrame`s in the turn's audio context. An interruption
cancels the utterance on the server, which aborts its engine requests; no audio of it is
pushed after the interruption.

One session (one WebSocket) per service, opened at `StartFrame` (and again for the next turn
if the server closed it while there was nothing to say) and closed at the end or cancel; each
turn's audio is read by one task, which ends the turn's audio context whatever its outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from pipecat.frames.frames import (CancelFrame, EndFrame, ErrorFrame, Frame, StartFrame,
                                   TTSAudioRawFrame, TTSStoppedFrame)
from pipecat.services.tts_service import TextAggregationMode, TTSService

from orpheus_tts import protocol as p
from orpheus_tts.errors import OrpheusError
from orpheus_tts.session import Session, Utterance, session_headers

__all__ = ["OrpheusTTSService"]


class OrpheusTTSService(TTSService):
    def __init__(self, *, base_url: str, api_key: str | None = None, voice: str | None = None,
                 params: dict[str, Any] | None = None, **kwargs: Any):
        kwargs.setdefault("text_aggregation_mode", TextAggregationMode.TOKEN)
        kwargs.setdefault("stop_frame_timeout_s", 30.0)  # a CPU engine may take long
        super().__init__(push_start_frame=True, sample_rate=p.SAMPLE_RATE, **kwargs)
        self._base_url = base_url
        self._api_key = api_key
        self._voice = voice
        self._params = dict(params or {})
        self._session: Session | None = None
        self._utterances: dict[str, Utterance] = {}  # audio context id -> its utterance
        self._readers: dict[str, asyncio.Task] = {}
        self._failed_context: str | None = None  # a turn whose utterance failed: no more text

    def can_generate_metrics(self) -> bool:
        return True

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self._connect()

    async def stop(self, frame: EndFrame) -> None:
        await super().stop(frame)
        await self._disconnect()

    async def cancel(self, frame: CancelFrame) -> None:
        await super().cancel(frame)
        await self._disconnect()

    async def _connect(self) -> None:
        if self._session is not None and self._session.closed:
            # The server closed it (its idle timeout, between turns): its utterances are
            # over; the next turn gets a new socket.
            stale, self._session = self._session, None
            await stale.aclose()
        if self._session is None:
            self._session = Session(self._base_url, session_headers(self._api_key),
                                    voice=self._voice, **self._params)
            await self._session.connect()

    async def _disconnect(self) -> None:
        for context_id in list(self._utterances):
            await self._drop(context_id)
        session, self._session = self._session, None
        if session is not None:
            await session.aclose()

    # --- TTSService's interface --------------------------------------------------------------
    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        if context_id == self._failed_context:
            # The rest of a failed turn: a new utterance would start mid-reply. A context
            # Pipecat made again for this text is ended, or it would hold the next turn back.
            await self._end_context(context_id)
            yield None
            return
        try:
            utt = self._utterances.get(context_id)
            if utt is None:
                await self._connect()
                assert self._session is not None
                utt = await self._session.open()
                self._utterances[context_id] = utt
                self._readers[context_id] = self.create_task(
                    self._read(context_id, utt), name=f"orpheus-{context_id}")
                await self.start_tts_usage_metrics(text)
            await utt.send(text)
        except OrpheusError as exc:
            self._failed_context = context_id
            await self._end_context(context_id)
            yield ErrorFrame(error=f"Orpheus TTS: {exc}")
            return
        yield None  # audio arrives through `_read`

    async def flush_audio(self, context_id: str | None = None) -> None:
        """The turn's text is complete: end its utterance."""
        context_id = context_id or self.get_active_audio_context_id()
        utt = self._utterances.get(context_id) if context_id else None
        if utt is not None and not utt.finished:
            await utt.end()

    async def on_audio_context_interrupted(self, context_id: str) -> None:
        await self._drop(context_id)
        await super().on_audio_context_interrupted(context_id)

    # --- internals ---------------------------------------------------------------------------
    async def _read(self, context_id: str, utt: Utterance) -> None:
        try:
            async for pcm in utt:
                await self.append_to_audio_context(context_id, TTSAudioRawFrame(
                    audio=pcm, sample_rate=p.SAMPLE_RATE, num_channels=p.CHANNELS,
                    context_id=context_id))
        except OrpheusError as exc:
            await self.push_error(error_msg=f"Orpheus TTS: {exc}")
        finally:
            interrupted = self._utterances.get(context_id) is not utt  # `_drop` took it
            if not interrupted:
                self._utterances.pop(context_id, None)
                self._readers.pop(context_id, None)
        if interrupted:
            return
        if utt.outcome == "done":
            await self.append_to_audio_context(context_id, TTSStoppedFrame(context_id=context_id))
        else:
            self._failed_context = context_id
        # Whatever the outcome, the context is over: a failed turn's context left open would
        # hold every later turn's audio back until Pipecat's stop-frame timeout.
        await self._end_context(context_id)

    async def _end_context(self, context_id: str) -> None:
        if self.audio_context_available(context_id):
            await self.remove_audio_context(context_id)

    async def _drop(self, context_id: str) -> None:
        """Cancel a context's utterance on the server and stop reading it. Idempotent."""
        utt = self._utterances.pop(context_id, None)
        reader = self._readers.pop(context_id, None)
        if utt is not None:
            await utt.cancel()
        if reader is not None:
            await self.cancel_task(reader)
