"""The sending side of a server WebSocket, owned by one session: one lock so messages never
interleave, and a socket that is gone makes every later send a no-op instead of an error."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel
from starlette.websockets import WebSocket, WebSocketDisconnect

SOCKET_ERRORS = (WebSocketDisconnect, RuntimeError, OSError)


class SessionSocket:
    def __init__(self, websocket: WebSocket):
        self.ws = websocket
        self.open = True
        self.lock = asyncio.Lock()

    async def send_json(self, message: BaseModel) -> None:
        async with self.lock:
            await self._send(self.ws.send_text, message.model_dump_json())

    async def send_bytes(self, data: bytes) -> bool:
        async with self.lock:
            await self._send(self.ws.send_bytes, data)
            return self.open

    async def _send(self, send, payload) -> None:
        if not self.open:
            return
        try:
            await send(payload)
        except SOCKET_ERRORS:
            self.open = False

    async def close(self, code: int, reason: str) -> None:
        """Close once; a socket already gone is left alone."""
        if not self.open:
            return
        self.open = False
        try:
            await self.ws.close(code, reason)
        except SOCKET_ERRORS:
            pass
