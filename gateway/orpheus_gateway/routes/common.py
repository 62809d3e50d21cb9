"""What the streaming routes share: the gateway, the body, the client watch, the response."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from starlette.requests import HTTPConnection
from starlette.types import Receive, Scope, Send

from orpheus_tts import protocol as p

from ..browser import require_json
from ..core import ActiveStream, Gateway, StreamAborted
from ..logs import response_cut_on_purpose

MAX_BODY_BYTES = 1 << 20
SERVER_SEND_SCOPE = "orpheus.server_send"  # the server's `send`, before any middleware wraps it


def gateway_of(conn: HTTPConnection) -> Gateway:
    return conn.app.state.gateway


async def read_json(request: Request) -> Any:
    """The request body as JSON: declared `application/json` (415), at most `MAX_BODY_BYTES`
    (413), complete within the body deadline (408), valid JSON (400)."""
    require_json(request.headers)
    gw = gateway_of(request)

    raw = bytearray()
    try:
        async with asyncio.timeout(gw.config.body_timeout_s):  # no task of its own
            async for part in request.stream():
                raw += part
                if len(raw) > MAX_BODY_BYTES:
                    raise p.RequestError(p.ErrorCode.REQUEST_TOO_LARGE,
                                         f"Request body is over {MAX_BODY_BYTES} bytes.")
    except TimeoutError:
        raise p.RequestError(p.ErrorCode.REQUEST_TIMEOUT,
                             f"The request body did not arrive within "
                             f"{gw.config.body_timeout_s:g} s.") from None
    return p.parse_json_body(bytes(raw))


class ClientWatch:
    """Notices the client of one HTTP request going away: one task for the request's whole
    life (opening the stream, then relaying it). `stop()` is idempotent.

    The task holds no reference back to the watch or to what the callback reaches, so a
    finished request is freed by reference counting, not left to the cycle collector."""

    def __init__(self, receive: Receive):
        self._on_gone: Callable[[], None] | None = None
        self.task = asyncio.get_running_loop().create_task(_until_disconnect(receive))
        self.task.add_done_callback(self._ended)  # dropped by the task once it is done

    def _ended(self, task: asyncio.Task) -> None:
        if not task.cancelled() and self._on_gone is not None:
            self._on_gone()

    def on_gone(self, callback: Callable[[], None] | None) -> None:
        """Call `callback` when the client leaves (at once if it already has)."""
        self._on_gone = callback
        if callback is not None and self.task.done() and not self.task.cancelled():
            callback()

    def stop(self) -> None:
        self._on_gone = None
        self.task.cancel()


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def open_watched(request: Request, opening: Awaitable[ActiveStream]
                       ) -> tuple[ActiveStream, ClientWatch] | None:
    """Open a stream while watching the client; None (the stream closed) if it left first.
    The watch goes on to the `RelayResponse`, which stops it; any other exit stops it here.

    The opening runs in this task, inside a cancel scope the client's leaving expires: a task
    of its own would be one more turn of the event loop, behind every other request of a
    burst, before the worker request goes out."""
    watch = ClientWatch(request.receive)
    try:
        async with asyncio.timeout(None) as scope:
            watch.on_gone(lambda: scope.reschedule(asyncio.get_running_loop().time()))
            stream = await opening
    except TimeoutError:
        watch.stop()
        if scope.expired():
            return None  # the opening was cancelled where it stood, and cleaned up after itself
        raise
    except BaseException:
        watch.stop()
        raise
    watch.on_gone(None)
    return stream, watch


class RelayResponse(Response):
    """A streaming response that owns an `ActiveStream`, sent with raw ASGI messages.

    Whatever happens (finished, client gone, never started), the stream is closed once. A
    client that goes away interrupts the relay at once (its pending worker read), which closes
    the worker connection. `StreamAborted` from the body leaves the response unterminated, so
    the server cuts the connection and the client sees a broken transfer. With `audio_prefix`,
    the first piece that starts with it marks the stream's first audio sent. The body yields
    one piece for the worker's terminal frame, as it takes it, and nothing after: that piece
    goes out together with the end of the body, in one write, and the client is done with the
    stream as soon as it has it.
    """

    def __init__(self, body: AsyncIterator[bytes], owner: ActiveStream, watch: ClientWatch, *,
                 media_type: str, headers: dict[str, str], audio_prefix: bytes | None = None):
        self.body_iterator = body
        self.owner = owner
        self.watch = watch
        self.audio_prefix = audio_prefix
        self.status_code = 200
        self.media_type = media_type
        self.background = None
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        owner, body, prefix = self.owner, self.body_iterator, self.audio_prefix
        upstream = owner.upstream
        self.watch.on_gone(owner.client_gone)
        try:
            # The start goes through the middleware (request id, "response started"); the body
            # chunks, which no middleware looks at, straight to the server.
            await send({"type": "http.response.start", "status": 200,
                        "headers": self.raw_headers})
            send = scope.get(SERVER_SEND_SCOPE, send)
            async for piece in body:
                if upstream.outcome is not None:
                    # The terminal frame, the last piece. The body then only reads the worker's
                    # response to its end (for the connection's reuse); the client, done with
                    # the request, no longer interrupts it, nor holds its slot meanwhile.
                    self.watch.stop()
                    await send({"type": "http.response.body", "body": piece, "more_body": False})
                    owner.settle()
                    async for _ in body:
                        pass
                    return
                await send({"type": "http.response.body", "body": piece, "more_body": True})
                if prefix is not None and piece.startswith(prefix):
                    owner.first_audio_sent()
                    prefix = None
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except StreamAborted:
            response_cut_on_purpose()
            return
        except OSError:
            return
        finally:
            self.watch.stop()
            await body.aclose()  # type: ignore[attr-defined]
            await owner.close()


def worker_header(stream: ActiveStream) -> dict[str, str]:
    """`X-Orpheus-Worker` of the worker serving the stream, when it sent one."""
    name = stream.upstream.headers.get(p.HEADER_WORKER_ID)
    return {p.HEADER_WORKER_ID: name} if name else {}


def schema_body(model: type) -> dict[str, Any]:
    """OpenAPI `requestBody` for a route that reads its body itself. Nested models are inlined:
    pydantic's `#/$defs/...` references do not resolve inside an OpenAPI document."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": inline(schema)}}}}
