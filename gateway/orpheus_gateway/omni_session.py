"""`WS /v1/audio/speech/stream`: vLLM-Omni's streaming-text speech protocol on our engine.

Messages are declared in `orpheus_tts.protocol.omni`. Each utterance (`input.text`... until
`input.done`) is a `TextUtterance` whose segments are the protocol's sentences, cut by the
`split_granularity` of the `session.config`. Utterances are spoken one after another; each
ends with exactly one `session.done`. The session owns its utterances and the one task that
speaks them; `shutdown()` (idempotent) cancels whatever is left when the socket goes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from starlette.websockets import WebSocket

from orpheus_tts import protocol as p
from orpheus_tts.protocol import omni as po
from orpheus_tts.wav import pcm_to_wav

from .core import Gateway
from .segmenter import GRANULARITIES
from .textstream import Done, Failed, Terminal, TextUtterance, UtteranceClosed
from .ws_socket import SocketSession, next_queued
from .ws_text import segment_opener

log = logging.getLogger("orpheus_gateway.omni")

MAX_QUEUED_UTTERANCES = 8


class _Utterance:
    """One utterance's protocol state around its pipeline."""

    def __init__(self, session: OmniSession, index: int, config: po.OmniSessionConfig):
        self.session = session
        self.index = index
        self.config = config
        self.sentences = 0
        self.open_sentence: int | None = None
        self.sentence_bytes = 0
        self.buffer = bytearray()  # a sentence's audio, when it is sent whole
        self.text = TextUtterance(
            segment_opener(session.gateway, config.tts_body(), session.key_id, "omni"),
            self._audio, self._end, segmenter=GRANULARITIES[config.split_granularity],
            on_segment=self._segment, max_segment_chars=session.gateway.config.max_text_chars)

    async def _segment(self, index: int, text: str | None) -> None:
        if text is not None:
            self.open_sentence, self.sentence_bytes = index, 0
            self.buffer.clear()
            await self.session.send(po.OmniAudioStart(
                utterance_index=self.index, sentence_index=index, sentence_text=text,
                format=self.config.response_format))
            return
        await self._close_sentence(error=False)

    async def _close_sentence(self, error: bool) -> None:
        index = self.open_sentence
        if index is None:
            return
        self.open_sentence = None
        if not error and not self.config.stream_audio:
            pcm = bytes(self.buffer)
            data = pcm_to_wav(pcm) if self.config.response_format == "wav" else pcm
            self.sentence_bytes = len(data)
            await self.session.send(data)
        self.buffer.clear()
        self.sentences += 1
        await self.session.send(po.OmniAudioDone(
            utterance_index=self.index, sentence_index=index, total_bytes=self.sentence_bytes,
            error=error))

    async def _audio(self, pcm: bytes) -> bool:
        if self.config.stream_audio:
            self.sentence_bytes += len(pcm)
            return await self.session.send(pcm)
        self.buffer += pcm
        return self.session.socket.open

    async def _end(self, terminal: Terminal) -> None:
        if isinstance(terminal, Failed):
            await self._close_sentence(error=True)
            await self.session.send(po.OmniError(code=terminal.code, message=terminal.message,
                                                 utterance_index=self.index))
        await self.session.send(po.OmniSessionDone(
            utterance_index=self.index, total_sentences=self.sentences,
            error=not isinstance(terminal, Done)))


class OmniSession(SocketSession):
    def __init__(self, gateway: Gateway, websocket: WebSocket, key_id: str,
                 idle_timeout_s: float):
        super().__init__(gateway, websocket, key_id, idle_timeout_s)
        self._config: po.OmniSessionConfig | None = None
        self._current: _Utterance | None = None  # taking text
        self._queue: deque[_Utterance] = deque()  # ended or taking text, not yet spoken
        self._speaking: _Utterance | None = None
        self._wake = asyncio.Event()
        self._count = 0
        self._shut = False
        self._closer: asyncio.Task | None = None

    # --- sending -----------------------------------------------------------------------------
    async def send(self, message: po.OmniServerMessage | bytes) -> bool:
        return await self.socket.send(message)

    async def _refuse(self, exc: p.RequestError) -> None:
        self.gateway.count_error(exc.code)
        await self.send(po.OmniError(code=exc.code, message=exc.message))

    # --- the session -------------------------------------------------------------------------
    def busy(self) -> bool:
        return not (self._idle() or self._stalled())

    def closed(self) -> bool:
        return self.closing and self._idle()

    def _idle(self) -> bool:
        return self._speaking is None and not self._queue and self._current is None

    def _stalled(self) -> bool:
        """Nothing to speak but an utterance that waits for text the client does not send."""
        utts = [u for u in (self._speaking, *self._queue) if u is not None]
        return all(u.text.waiting_for_text for u in utts)

    async def handle(self, raw: str | bytes) -> None:
        if self.closing:
            return  # after session.close the session only finishes what it was sent
        try:
            msg = po.parse_omni_message(raw)
        except p.RequestError as exc:
            await self._refuse(exc)
            return
        if isinstance(msg, po.OmniSessionConfig):
            await self._configure(msg)
        elif isinstance(msg, po.OmniInputText):
            await self._text(msg.text)
        elif isinstance(msg, po.OmniInputDone):
            await self._done()
        else:  # session.close: what was sent is still spoken, then the socket closes
            if self._current is not None:
                await self._done()
            self.closing = True
            # Closed from its own task, so the socket is still read meanwhile: a client that
            # leaves before the end is noticed and its engine requests are aborted.
            self._closer = asyncio.create_task(self._close_when_spoken(), name="omni-close")

    async def _close_when_spoken(self) -> None:
        while not self._idle() and self.socket.open:
            self._wake.clear()
            await self._wake.wait()
        await self.socket.close(1000, "closed")

    async def _configure(self, msg: po.OmniSessionConfig) -> None:
        if self._current is not None:
            await self._refuse(p.RequestError(p.ErrorCode.INVALID_REQUEST,
                                              "session.config cannot change an utterance "
                                              "under way; send input.done first."))
            return
        try:
            self.gateway.validate({**msg.tts_body(), "text": "."})
        except p.RequestError as exc:
            await self._refuse(exc)
            return
        self._config = msg

    async def _text(self, text: str) -> None:
        if self._config is None:
            await self._refuse(p.RequestError(p.ErrorCode.INVALID_REQUEST,
                                              "Send session.config first."))
            return
        if self._current is None:
            if len(self._queue) >= MAX_QUEUED_UTTERANCES:
                await self._refuse(p.RequestError(
                    p.ErrorCode.RATE_LIMITED, f"At most {MAX_QUEUED_UTTERANCES} utterances "
                    "may wait in one session."))
                return
            try:
                self._current = _Utterance(self, self._count, self._config)
            except p.RequestError as exc:
                await self._refuse(exc)
                return
            self._count += 1
            self._queue.append(self._current)
            self._wake.set()
        try:
            self._current.text.append(text)
        except UtteranceClosed:
            # It failed and its session.done said so; the rest of its text, up to its
            # input.done, is dropped rather than spoken as a new utterance.
            pass

    async def _done(self) -> None:
        if self._current is None:
            await self._text("")  # an empty utterance still gets its session.done
            if self._current is None:
                return
        utt, self._current = self._current, None
        try:
            utt.text.end()
        except UtteranceClosed:
            pass
        self._wake.set()

    async def shutdown(self) -> None:
        """Cancel every utterance not yet finished and close its streams. Idempotent."""
        if self._shut:
            return
        self._shut = True
        if self._closer is not None:
            self._closer.cancel()
        for utt in [self._speaking, *self._queue]:
            if utt is not None:
                await utt.text.cancel()

    async def speaker(self) -> None:
        while True:
            utt = await next_queued(self._queue, self._wake)
            self._speaking = utt
            try:
                utt.text.start()
                await utt.text.wait()
            finally:
                await utt.text.cancel()  # a no-op once it has finished
                self._speaking = None
                self._wake.set()
