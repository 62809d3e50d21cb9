"""What every WebSocket session (`WS /v1/tts/ws`, Canopy's, vLLM-Omni's) shares.

`SessionSocket` is the sending side of a server WebSocket, owned by one session: one lock so
messages never interleave, each send bounded by `SEND_TIMEOUT_S`, a socket that is gone (or a
client that stopped reading) makes every later send a no-op instead of an error, `close`
happens once, and each utterance (anything with a `finished` flag) gets exactly
one terminal message, after which nothing more is sent for it.

`SocketSession` holds what each session is constructed with, and `next_queued` is the wait of
a session's speaker for its next utterance.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections import deque
from contextlib import aclosing
from typing import TYPE_CHECKING, Protocol, TypeVar

from pydantic import BaseModel
from starlette.websockets import WebSocket, WebSocketDisconnect

from orpheus_tts.protocol import WS_CLOSE_IDLE

from .ws_receive import Idle, messages

if TYPE_CHECKING:
    from .core import Gateway

SOCKET_ERRORS = (WebSocketDisconnect, RuntimeError, OSError)
# A client that takes no message for this long (its buffers full: it stopped reading) is
# treated as gone, so its utterances end and their worker streams close.
SEND_TIMEOUT_S = 20.0

Message = BaseModel | str | bytes  # a model goes as its JSON text


class Finishable(Protocol):
    finished: bool


class SessionSocket:
    def __init__(self, websocket: WebSocket):
        self.ws = websocket
        self.open = True
        self.lock = asyncio.Lock()

    async def send(self, message: Message) -> bool:
        """Send one message; False when the socket is (now) gone."""
        async with self.lock:
            return await self._send(message)

    async def send_for(self, item: Finishable, message: Message, *, last: bool = False) -> bool:
        """A message of `item` (its audio), never after its terminal; with `last` the message
        is that one terminal (recorded even when the socket is gone). False when not sent."""
        async with self.lock:
            if item.finished:
                return False
            item.finished = last
            return await self._send(message) or last

    async def finish(self, item: Finishable, message: Message) -> bool:
        """`item`'s one terminal message; later calls do nothing and answer False."""
        return await self.send_for(item, message, last=True)

    async def _send(self, message: Message) -> bool:
        if not self.open:
            return False
        try:
            async with asyncio.timeout(SEND_TIMEOUT_S):
                if isinstance(message, bytes):
                    await self.ws.send_bytes(message)
                else:
                    await self.ws.send_text(message if isinstance(message, str)
                                            else message.model_dump_json())
        except (*SOCKET_ERRORS, TimeoutError):
            self.open = False
        return self.open

    async def close(self, code: int, reason: str) -> None:
        """Close once; a socket already gone is left alone."""
        if not self.open:
            return
        self.open = False
        try:
            await self.ws.close(code, reason)
        except SOCKET_ERRORS:
            pass


class SocketSession(ABC):
    """A session's construction (its gateway, its socket's one owner, the caller's key id, the
    idle timeout) and its life: `run()` hands each message to `handle()` until the client
    leaves, the session has closed itself (`closed()`), or nothing happened for the idle
    timeout while not `busy()`; then `shutdown()` ends what is left, and the speaker task
    (`speaker()`, when the session has one) is cancelled."""

    def __init__(self, gateway: Gateway, websocket: WebSocket, key_id: str,
                 idle_timeout_s: float):
        self.gateway = gateway
        self.ws = websocket
        self.socket = SessionSocket(websocket)
        self.key_id = key_id
        self.idle_timeout_s = idle_timeout_s
        self.closing = False  # the client asked to close: the socket closes with 1000

    @abstractmethod
    async def handle(self, raw: str | bytes) -> None:
        """One message from the client."""

    @abstractmethod
    def busy(self) -> bool:
        """Whether the session is working, so the idle timeout does not close it."""

    @abstractmethod
    async def shutdown(self) -> None:
        """End whatever is left of the session's utterances. Idempotent."""

    def closed(self) -> bool:
        return self.closing

    async def speaker(self) -> None:
        """Speaks what the session queued, for the whole session (none by default)."""

    async def on_idle(self) -> None:
        """Before the socket closes for idleness."""

    async def run(self) -> None:
        speaker = asyncio.create_task(self.speaker(), name=f"{type(self).__name__}-speaker")
        try:
            async with aclosing(messages(self.ws, self.idle_timeout_s, self.busy)) as received:
                async for raw in received:
                    await self.handle(raw)
                    if self.closed():
                        break
                else:
                    self.socket.open = False  # the client disconnected
        except Idle:
            await self.on_idle()
            await self.socket.close(WS_CLOSE_IDLE, "idle timeout")
        except SOCKET_ERRORS:
            self.socket.open = False
        finally:
            await self.shutdown()
            speaker.cancel()
            await asyncio.gather(speaker, return_exceptions=True)
            if self.closing:
                await self.socket.close(1000, "closed")


T = TypeVar("T")


async def next_queued(queue: deque[T], wake: asyncio.Event) -> T:
    """The next utterance of a session's queue, waiting (for `wake`) while it is empty."""
    while not queue:
        wake.clear()
        await wake.wait()
    return queue.popleft()
