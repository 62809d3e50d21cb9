"""`WS /v1/canopy/ws`: Canopy Labs' hosted protocol (`orpheus_tts.protocol.canopy`) on the
gateway's streams.

The same lifecycle laws as our own WebSocket session: each request's upstream stream has one
owner (its task), cleanup is idempotent, and every request the socket accepted ends with
exactly one terminal message (`done` or `error`), after which no audio for it is sent. A
disconnect cancels every task, and each task's `finally` closes its stream, which aborts the
engine request on the worker.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from contextlib import aclosing
from dataclasses import dataclass, field

from starlette.websockets import WebSocket

from orpheus_tts import protocol as p
from orpheus_tts.protocol import canopy as c

from .audio import Resample
from .core import ActiveStream, Gateway
from .ws_socket import SocketSession

log = logging.getLogger("orpheus_gateway.canopy")

# Requests one socket may have open at once (Canopy's client defaults to no cap per socket;
# the gateway's per-key stream limit still applies to each).
MAX_OPEN_PER_SOCKET = 64


@dataclass(eq=False)  # identity: held in a set
class CanopyRequestState:
    server_id: int | None  # None: legacy
    client_id: str | None
    finished: bool = False
    task: asyncio.Task | None = field(default=None, repr=False)


class CanopySession(SocketSession):
    def __init__(self, gateway: Gateway, websocket: WebSocket, key_id: str,
                 idle_timeout_s: float):
        super().__init__(gateway, websocket, key_id, idle_timeout_s)
        self._legacy_turn = asyncio.Lock()  # legacy requests speak one at a time
        self._open: set[CanopyRequestState] = set()
        self._next_id = 0

    async def _audio(self, req: CanopyRequestState, pcm: bytes) -> bool:
        return await self.socket.send_for(req, c.audio(pcm, req.server_id))

    async def _finish(self, req: CanopyRequestState, message: str) -> None:
        """`req`'s one terminal message; later calls do nothing."""
        self._open.discard(req)
        await self.socket.finish(req, message)

    # --- the session -----------------------------------------------------------------------
    def busy(self) -> bool:
        return bool(self._open)

    async def handle(self, raw: str | bytes) -> None:
        try:
            msg = c.parse_canopy_request(raw)
            if len(self._open) >= MAX_OPEN_PER_SOCKET:
                raise p.RequestError(
                    p.ErrorCode.RATE_LIMITED,
                    f"Too many open requests on this socket (limit {MAX_OPEN_PER_SOCKET}).")
            if msg.multiplexed and any(s.client_id == msg.request_id for s in self._open):
                raise p.RequestError(
                    p.ErrorCode.INVALID_REQUEST,
                    f"Request '{msg.request_id}' is already open on this socket.")
            request = self.gateway.validate(msg.tts_body())
        except p.RequestError as exc:
            self.gateway.count_error(exc.code)
            await self.socket.send(c.error(_text(exc.code, exc.message),
                                           client_id=c.client_request_id(raw)))
            return
        state = CanopyRequestState(self._new_server_id() if msg.multiplexed else None,
                                   msg.request_id)
        self._open.add(state)
        if state.server_id is not None:
            await self.socket.send(c.accepted(state.server_id, msg.request_id or ""))
        state.task = asyncio.create_task(self._speak(state, request),
                                         name=f"canopy-{state.server_id}")

    def _new_server_id(self) -> int:
        self._next_id = self._next_id % c.MAX_SERVER_ID + 1
        return self._next_id

    async def shutdown(self) -> None:
        """Cancel every open request; each task closes its own stream. Idempotent."""
        tasks = [s.task for s in list(self._open) if s.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- one request ---------------------------------------------------------------------------
    async def _speak(self, req: CanopyRequestState, request: p.TTSRequest) -> None:
        if req.server_id is None:
            async with self._legacy_turn:
                await self._speak_now(req, request)
        else:
            await self._speak_now(req, request)

    async def _speak_now(self, req: CanopyRequestState, request: p.TTSRequest) -> None:
        stream: ActiveStream | None = None
        resample = Resample(c.CANOPY_SAMPLE_RATE)
        ids = dict(server_id=req.server_id, client_id=req.client_id)
        try:
            stream = await self.gateway.start_stream(request, self.key_id, "canopy",
                                                     time.monotonic())
            async with aclosing(stream.lines()) as lines:
                async for line in lines:
                    kind = p.line_type(line)
                    if kind == "chunk":
                        pcm = resample.process(p.chunk_audio(line))
                        if pcm:
                            if not await self._audio(req, pcm):
                                return
                            stream.first_audio_sent()
                    elif kind == "eos":
                        tail = resample.flush()
                        if tail and not await self._audio(req, tail):
                            return
                        await self._finish(req, c.done(**ids))
                    elif kind == "error":
                        frame = p.decode_frame(line)
                        assert isinstance(frame, p.ErrorFrame)
                        await self._finish(req, c.error(_text(frame.error_code, frame.message),
                                                        **ids))
        except p.RequestError as exc:
            self.gateway.count_error(exc.code)
            await self._finish(req, c.error(_text(exc.code, exc.message), **ids))
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the request must still end explicitly
            log.exception("canopy request %s failed", req.server_id)
            await self._finish(req, c.error(_text(p.ErrorCode.INTERNAL,
                                                  "Internal error while speaking."), **ids))
        finally:
            if stream is not None:
                await stream.close()
            if not req.finished:
                await self._finish(req, c.error(_text(p.ErrorCode.UPSTREAM_LOST,
                                                      "The request ended without a result."),
                                                **ids))


def _text(code: p.ErrorCode, message: str) -> str:
    """The error text: code first. Canopy's client raises `AuthenticationError` for any text
    that mentions "auth" or "key", so no other error may say so."""
    text = f"{code.value}: {message}"
    if code is not p.ErrorCode.UNAUTHORIZED:
        text = re.sub(r"(?i)auth|key", lambda m: "*" * len(m.group()), text)
    return text
