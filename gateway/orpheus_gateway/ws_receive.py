"""The receive side every WebSocket session shares: raw messages until the client leaves,
and an idle deadline that does not count while the session is busy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from starlette.websockets import WebSocket


class Idle(Exception):
    """Nothing received and nothing in progress for the idle timeout."""


async def messages(ws: WebSocket, idle_timeout_s: float,
                   busy: Callable[[], bool]) -> AsyncIterator[str | bytes]:
    """Each message's text or bytes; ends when the client disconnects; raises `Idle`."""
    while True:
        try:
            async with asyncio.timeout(idle_timeout_s):
                message = await ws.receive()
        except TimeoutError:
            if busy():
                continue  # speaking is not idle
            raise Idle from None
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        yield text if text is not None else (message.get("bytes") or b"")
