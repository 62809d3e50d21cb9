"""How the gateway meets the network: uvicorn settings that bound what a client may hold open.

Bounds (docs/gateway.md, "Hostile clients"):
- request head (request line and headers): at most `MAX_HEAD_BYTES`, larger is answered 400
  and closed (h11's limit covers only a head still incomplete, so one that arrives in a single
  read is measured once parsed: `HeadBoundConnection`), and complete within `HEADER_TIMEOUT_S` of the connection opening or
  of the previous response — uvicorn has no such deadline, so `HeadDeadlineH11Protocol` adds
  it; a connection that sends nothing is closed after the same time;
- request body: complete within `BODY_TIMEOUT_S` (408) and at most 1 MiB (413), in
  `routes.common.read_json`; a connection answered before its body was all in (401, 408,
  413) is closed unless the body completes within `ANSWERED_GRACE_S`;
- idle keep-alive: `KEEP_ALIVE_S`; WebSocket messages: at most `WS_MAX_MESSAGE_BYTES`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from .config import HEADER_TIMEOUT_S

MAX_HEAD_BYTES = 16 * 1024
KEEP_ALIVE_S = 5
WS_MAX_MESSAGE_BYTES = 256 * 1024
ANSWERED_GRACE_S = 1.0  # for the rest of a body the app answered without reading


class HeadBoundConnection(h11.Connection):
    """h11's server connection, refusing a parsed request head over `MAX_HEAD_BYTES` (uvicorn
    answers h11's protocol error with a 400 and closes)."""

    def next_event(self) -> Any:
        event = super().next_event()
        if isinstance(event, h11.Request):
            size = len(event.method) + len(event.target) + sum(
                len(name) + len(value) + 4 for name, value in event.headers.raw_items())
            if size > MAX_HEAD_BYTES:
                raise h11.RemoteProtocolError("request head too large", error_status_hint=431)
        return event


class HeadDeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, plus: a request head must arrive within `HEADER_TIMEOUT_S`, and
    its size is bounded however it arrives (`HeadBoundConnection`)."""

    head_timeout_s = HEADER_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = HeadBoundConnection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_limit: float | None = None
        super().connection_made(transport)
        self._watch_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_head()

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
        if self.transport.is_closing():
            return None
        if self.conn.their_state is h11.IDLE:
            return self.head_timeout_s
        if self.conn.their_state is h11.SEND_BODY and self.conn.our_state is h11.DONE:
            return ANSWERED_GRACE_S
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
    return {"http": HeadDeadlineH11Protocol, "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
            "timeout_keep_alive": KEEP_ALIVE_S, "ws": RefusingWebSocketProtocol,
            "ws_max_size": WS_MAX_MESSAGE_BYTES}
