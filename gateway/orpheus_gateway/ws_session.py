"""`WS /v1/tts/ws`: a session of utterances with an explicit lifecycle.

Built on three rules: every upstream stream has exactly one owner (the task speaking that
utterance); cleanup is idempotent (`Utterance.finish`, `ActiveStream.close`, `shutdown`); and
completion is explicit (every accepted `speak` ends with exactly one `done`, `error` or
`cancelled` message, and no audio for it follows that message). Message shapes live in
`orpheus_tts.protocol` (WebSocket section); docs/gateway.md describes the session.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from contextlib import aclosing
from dataclasses import dataclass

from starlette.websockets import WebSocket

from orpheus_tts import protocol as p

from .core import ActiveStream, Gateway
from .error_shapes import ws_error
from .textstream import TextUtterance
from .ws_socket import SocketSession, next_queued
from .ws_text import open_text_utterance, text_message

log = logging.getLogger("orpheus_gateway.ws")


@dataclass
class Utterance:
    id: str
    request: p.TTSRequest | None  # a `speak`; None for an `open` (its text arrives later)
    finished: bool = False
    text: TextUtterance | None = None  # an `open`'s pipeline


class WsSession(SocketSession):
    def __init__(self, gateway: Gateway, websocket: WebSocket, key_id: str,
                 idle_timeout_s: float):
        super().__init__(gateway, websocket, key_id, idle_timeout_s)
        self._queue: deque[Utterance] = deque()
        self._open: dict[str, Utterance] = {}  # queued or active, by id
        self._active: Utterance | None = None
        self._active_task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._shut = False

    # --- sending ---------------------------------------------------------------------------
    async def send(self, message: p.WsServerMessage) -> None:
        await self.socket.send(message)

    async def finish(self, utt: Utterance, message: p.WsServerMessage) -> bool:
        """Send `utt`'s terminal message unless it already has one. Idempotent."""
        if self._open.get(utt.id) is utt:
            del self._open[utt.id]
        return await self.socket.finish(utt, message)

    async def _send_audio(self, utt: Utterance, seq: int, pcm: bytes) -> bool:
        return await self.socket.send_for(utt, p.encode_ws_audio(utt.id, seq, pcm))

    # --- the session -----------------------------------------------------------------------
    async def on_idle(self) -> None:
        await self.cancel_all()  # an `open` still waiting for text hears why

    def busy(self) -> bool:
        """Speaking, or about to: an `open` utterance that only waits for text the client has
        not sent for the whole idle timeout does not count, nor does what is queued behind it
        (it cannot be spoken before that utterance ends)."""
        utt = self._active
        if utt is None:
            return bool(self._queue)
        return utt.text is None or not utt.text.waiting_for_text

    async def handle(self, raw: str | bytes) -> None:
        try:
            msg = p.parse_ws_message(raw)
        except p.RequestError as exc:
            await self.send(ws_error(None, exc.code, exc.message))
            return
        if isinstance(msg, p.WsSpeak):
            await self._speak(msg)
        elif isinstance(msg, p.WsOpen):
            await self._open_text(msg)
        elif isinstance(msg, (p.WsAppend, p.WsFlush, p.WsEnd)):
            await self._feed_text(msg)
        elif isinstance(msg, p.WsInterrupt):
            await self.cancel_all()
        elif isinstance(msg, p.WsCancel):
            await self._cancel(msg.utterance_id)
        elif isinstance(msg, p.WsClose):
            self.closing = True
        elif isinstance(msg, p.WsPing):
            await self.send(p.WsPong())
        else:  # a second `auth`
            await self.send(ws_error(None, p.ErrorCode.INVALID_REQUEST,
                                     "The session is already authenticated."))

    async def _open_text(self, msg: p.WsOpen) -> None:
        if await self._duplicate(msg.utterance_id):
            return
        utt: Utterance | None = Utterance(msg.utterance_id, None)
        opened = utt
        try:
            self._check_queue_room(msg.interrupt)
            opened.text = open_text_utterance(
                self.gateway, msg, self.key_id, send=self.send,
                send_audio=lambda seq, pcm: self._send_audio(opened, seq, pcm),
                finish=lambda message: self.finish(opened, message))
            problem = None
        except p.RequestError as exc:
            utt, problem = None, exc
        await self._admit(msg.utterance_id, utt, problem, msg.interrupt)

    async def _feed_text(self, msg: p.WsAppend | p.WsFlush | p.WsEnd) -> None:
        utt = self._open.get(msg.utterance_id)
        problem = text_message(utt.text if utt is not None else None, msg)
        if problem is not None:
            await self.send(ws_error(None, p.ErrorCode.INVALID_REQUEST, problem))

    async def _speak(self, msg: p.WsSpeak) -> None:
        if await self._duplicate(msg.utterance_id):
            return
        try:
            self._check_queue_room(msg.interrupt)
            utt, problem = Utterance(msg.utterance_id, self.gateway.validate(msg.tts_body())), None
        except p.RequestError as exc:
            utt, problem = None, exc
        await self._admit(msg.utterance_id, utt, problem, msg.interrupt)

    def _check_queue_room(self, interrupt: bool) -> None:
        """A session holds at most `ws_max_queued` waiting utterances (an interrupt empties the
        queue first, so it always fits)."""
        limit = self.gateway.config.ws_max_queued
        if not interrupt and len(self._queue) >= limit:
            raise p.RequestError(p.ErrorCode.OVERLOADED,
                                 f"This session already has {limit} utterances waiting; "
                                 f"send more once some are done.")

    async def _duplicate(self, utterance_id: str) -> bool:
        """An id already queued or speaking is refused with a session error."""
        if utterance_id not in self._open:
            return False
        await self.send(ws_error(
            None, p.ErrorCode.INVALID_REQUEST,
            f"Utterance '{utterance_id}' is already queued or speaking."))
        return True

    async def _admit(self, utterance_id: str, utt: Utterance | None,
                     problem: p.RequestError | None, interrupt: bool) -> None:
        """Queue a `speak` or `open` (cancelling the others first on `interrupt`), or refuse it
        with its one terminal `error`."""
        if problem is not None or utt is None:
            assert problem is not None
            # Refused before it was ever open: this error is its one terminal message.
            self.gateway.count_error(problem.code)
            await self.send(ws_error(utterance_id, problem.code, problem.message))
            return
        self._open[utt.id] = utt
        if interrupt:
            await self.cancel_all()
        self._queue.append(utt)
        self._wake.set()

    async def _cancel(self, utterance_id: str) -> None:
        utt = self._open.get(utterance_id)
        if utt is None:
            await self.send(ws_error(
                None, p.ErrorCode.INVALID_REQUEST,
                f"No queued or speaking utterance '{utterance_id}' to cancel."))
            return
        await self._cancel_one(utt)

    async def _cancel_one(self, utt: Utterance) -> None:
        try:
            self._queue.remove(utt)
        except ValueError:
            pass
        await self.finish(utt, p.WsCancelled(utterance_id=utt.id))
        if utt.text is not None:
            await utt.text.cancel()  # every segment's stream closed before this returns
        if self._active is utt and self._active_task is not None:
            self._active_task.cancel()

    async def cancel_all(self) -> None:
        for utt in [self._active, *self._queue]:
            if utt is not None and not utt.finished:
                await self._cancel_one(utt)

    async def shutdown(self) -> None:
        """End every open utterance (cancelled) and its upstream stream. Idempotent."""
        if self._shut:
            return
        self._shut = True
        await self.cancel_all()
        task = self._active_task
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # --- speaking, one utterance at a time ----------------------------------------------------
    async def speaker(self) -> None:
        while True:
            utt = await next_queued(self._queue, self._wake)
            if utt.finished:
                continue
            self._active = utt
            self._active_task = asyncio.create_task(self._speak_one(utt), name=f"ws-{utt.id}")
            try:
                await asyncio.wait({self._active_task})
            finally:
                self._active = None
                self._active_task = None

    async def _speak_one(self, utt: Utterance) -> None:
        if utt.text is not None:
            await self._speak_text(utt, utt.text)
            return
        assert utt.request is not None
        stream: ActiveStream | None = None
        try:
            # The deadline and time to first audio count from here: waiting behind the
            # session's own earlier utterances is the client's choice, not latency.
            started_at = time.monotonic()
            await self.send(p.WsStarted(utterance_id=utt.id))
            stream = await self.gateway.start_stream(utt.request, self.key_id, "ws", started_at)
            seq = 0
            async with aclosing(stream.lines()) as lines:
                async for line in lines:
                    kind = p.line_type(line)
                    if kind == "chunk":
                        if not await self._send_audio(utt, seq, p.chunk_audio(line)):
                            return
                        seq += 1
                        stream.first_audio_sent()
                    elif kind == "eos":
                        eos = p.decode_frame(line)
                        stats = eos.model_dump(exclude_none=True, exclude={"type"}) if eos else {}
                        await self.finish(utt, p.WsDone(utterance_id=utt.id, stats=stats))
                    elif kind == "error":
                        frame = p.decode_frame(line)
                        assert isinstance(frame, p.ErrorFrame)
                        await self.finish(utt, ws_error(utt.id, frame.error_code, frame.message,
                                                        retryable=frame.retryable))
        except p.RequestError as exc:
            self.gateway.count_error(exc.code)
            await self.finish(utt, ws_error(utt.id, exc.code, exc.message))
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the utterance must still end explicitly
            log.exception("utterance %s failed", utt.id)
            await self.finish(utt, ws_error(utt.id, p.ErrorCode.INTERNAL,
                                            "Internal error while speaking."))
        finally:
            if stream is not None:
                await stream.close()
            if not utt.finished:  # ended with no terminal (e.g. socket gone): still explicit
                await self.finish(utt, ws_error(utt.id, p.ErrorCode.UPSTREAM_LOST,
                                                "The utterance ended without a result."))

    async def _speak_text(self, utt: Utterance, text: TextUtterance) -> None:
        """An `open` utterance: its pipeline sends the audio and the one terminal."""
        try:
            await self.send(p.WsStarted(utterance_id=utt.id))
            text.start()
            await text.wait()
        finally:
            await text.cancel()  # a no-op once finished; on a cancelled task, closes it all
