"""How the gateway meets the network: uvicorn settings that bound what a client may hold open.

Bounds (docs/gateway.md, "Hostile clients"):
- request head (request line and headers): at most `MAX_HEAD_BYTES`, larger is answered 400
  and closed (counted as it arrives, so a head that never ends is cut too), and complete within
  `HEADER_TIMEOUT_S` of the connection opening or of the previous response — uvicorn has no
  such deadline, so `BoundedHttpToolsProtocol` adds it; a connection that sends nothing is
  closed after the same time;
- request body: complete within `BODY_TIMEOUT_S` (408) and at most 1 MiB (413), in
  `routes.common.read_json`; a connection answered before its body was all in (401, 408,
  413) is closed unless the body completes within `ANSWERED_GRACE_S`;
- idle keep-alive: `KEEP_ALIVE_S`; WebSocket messages: at most `WS_MAX_MESSAGE_BYTES`.

The HTTP parser is uvicorn's httptools one (C), not h11 (pure Python): about a fifth less
gateway CPU per stream (docs/gateway.md, "Cost per stream").
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from .config import HEADER_TIMEOUT_S

MAX_HEAD_BYTES = 16 * 1024
KEEP_ALIVE_S = 5
WS_MAX_MESSAGE_BYTES = 256 * 1024
ANSWERED_GRACE_S = 1.0  # for the rest of a body the app answered without reading


class HeadTooLarge(Exception):
    pass


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus: a request head must arrive within `HEADER_TIMEOUT_S`
    and stay within `MAX_HEAD_BYTES`, and a body the app answered before it was all in gets
    `ANSWERED_GRACE_S` to finish."""

    head_timeout_s = HEADER_TIMEOUT_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_limit: float | None = None
        self._in_head = False  # a request head has begun and is not complete
        self._head_received = 0  # bytes received while in a head: what the parser buffers
        self._head_parsed = 0  # the head's size as parsed (a head that came in one read)
        self._message_done = True  # the last request's body is all in
        self._upgraded = False  # a WebSocket now: the other protocol's bounds apply
        super().connection_made(transport)
        self._watch_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_head:
            self._head_received += len(data)
            if self._head_received > MAX_HEAD_BYTES:
                self._refuse_head()
                return
        self._watch_head()

    def handle_websocket_upgrade(self) -> None:
        self._upgraded = True
        self._stop_head_timer()
        super().handle_websocket_upgrade()

    def _refuse_head(self) -> None:
        self._in_head = False
        self.logger.warning("Request head over %d bytes.", MAX_HEAD_BYTES)
        self.send_400_response("Request head too large.")

    # parser callbacks
    def on_message_begin(self) -> None:
        self._in_head, self._message_done = True, False
        self._head_received = self._head_parsed = 0
        super().on_message_begin()

    def _parsed(self, size: int) -> None:
        # A head that arrives in one read is measured here, as it is parsed.
        self._head_parsed += size
        if self._head_parsed > MAX_HEAD_BYTES:
            raise HeadTooLarge  # the parser's error: uvicorn answers 400 and closes

    def on_url(self, url: bytes) -> None:
        self._parsed(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._parsed(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._message_done = True
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def _waiting(self) -> float | None:
        """How long the connection may stay as it is: waiting for a request head, or answered
        before its body was all in (401, 408, 413: the rest would be read and dropped for as
        long as the client cares to send it); None when a request is being served."""
        if self._upgraded or self.transport.is_closing():
            return None
        if self._in_head or self.cycle is None:
            return self.head_timeout_s
        if self.cycle.response_complete:
            return self.head_timeout_s if self._message_done else ANSWERED_GRACE_S
        return None

    def _watch_head(self) -> None:
        """Armed while the connection waits (see `_waiting`), disarmed once it serves; data
        that trickles in does not push the deadline back."""
        limit = self._waiting()
        if limit != self._head_limit:
            self._stop_head_timer()
        if limit is not None and self._head_timer is None:
            self._head_timer = self.loop.call_later(limit, self._head_timed_out)
            self._head_limit = limit

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._head_limit = None

    def _head_timed_out(self) -> None:
        self._head_timer = self._head_limit = None
        if self._waiting() is not None:
            self.transport.close()


class RefusingWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, minus a false alarm: an upgrade the app refuses with an
    HTTP answer (`websocket.http.response.*`, as ASGI allows: a wrong key, a foreign origin) is
    logged as "ASGI callable returned without completing handshake" at ERROR. A refusal sent in
    full is a completed handshake."""

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body"):
            self.handshake_complete = True


def server_settings() -> dict[str, Any]:
    """The `uvicorn.Config` keyword arguments that bound clients (see the module docstring)."""
    return {"http": BoundedHttpToolsProtocol,
            "timeout_keep_alive": KEEP_ALIVE_S, "ws": RefusingWebSocketProtocol,
            "ws_max_size": WS_MAX_MESSAGE_BYTES}
