"""What the streaming routes share: the gateway, the body, the client watch, the response."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse
from starlette.requests import HTTPConnection
from starlette.types import Receive, Scope, Send

from orpheus_tts import protocol as p

from ..core import ActiveStream, Gateway, StreamAborted

MAX_BODY_BYTES = 1 << 20


def gateway_of(conn: HTTPConnection) -> Gateway:
    return conn.app.state.gateway


async def read_json(request: Request) -> Any:
    """The request body as JSON: at most `MAX_BODY_BYTES` (413), valid JSON (400)."""
    raw = bytearray()
    async for part in request.stream():
        raw += part
        if len(raw) > MAX_BODY_BYTES:
            raise p.RequestError(p.ErrorCode.REQUEST_TOO_LARGE,
                                 f"Request body is over {MAX_BODY_BYTES} bytes.")
    return p.parse_json_body(bytes(raw))


async def unless_disconnected(request: Request, opening: asyncio.Future) -> ActiveStream | None:
    """Wait for a stream to open, or give up (closing it) if the client leaves first."""
    async def client_gone() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(client_gone())
    try:
        await asyncio.wait({opening, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if opening.done():
        return opening.result()
    opening.cancel()
    results = await asyncio.gather(opening, return_exceptions=True)
    if isinstance(results[0], ActiveStream):
        await results[0].close()
    return None


class OwnedStreamingResponse(StreamingResponse):
    """A streaming response that owns an `ActiveStream`: whatever happens (finished, client
    gone, never started), the stream is closed once. `StreamAborted` leaves the response
    unterminated, so the server cuts the connection and the client sees a broken transfer."""

    def __init__(self, content: Any, owner: ActiveStream, **kwargs: Any):
        super().__init__(content, **kwargs)
        self.owner = owner

    async def stream_response(self, send: Send) -> None:
        try:
            await super().stream_response(send)
        except StreamAborted:
            return

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.owner.close()


def worker_header(stream: ActiveStream) -> dict[str, str]:
    """`X-Orpheus-Worker` of the worker serving the stream, when it sent one."""
    name = stream.upstream.headers.get(p.HEADER_WORKER_ID)
    return {p.HEADER_WORKER_ID: name} if name else {}


def schema_body(model: type) -> dict[str, Any]:
    """OpenAPI `requestBody` for a route that reads its body itself."""
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": model.model_json_schema()}}}}
