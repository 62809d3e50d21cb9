"""How the gateway meets the network: uvicorn settings that bound what a client may hold open,
and the log filter that keeps credentials out of every log line.

Bounds (docs/gateway.md, "Hostile clients"):
- request head (request line and headers): at most `MAX_HEAD_BYTES` (h11's limit: larger is
  answered 400 and closed) and complete within `HEADER_TIMEOUT_S` of the connection opening or
  of the previous response — uvicorn has no such deadline, so `HeadDeadlineH11Protocol` adds
  it; a connection that sends nothing is closed after the same time;
- request body: complete within `BODY_TIMEOUT_S` (408) and at most `MAX_BODY_BYTES` (413), in
  `app._read_json`;
- idle keep-alive: `KEEP_ALIVE_S`; WebSocket messages: at most `WS_MAX_MESSAGE_BYTES`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .config import HEADER_TIMEOUT_S

MAX_HEAD_BYTES = 16 * 1024
KEEP_ALIVE_S = 5
WS_MAX_MESSAGE_BYTES = 256 * 1024


class HeadDeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, plus: a request head must arrive within `HEADER_TIMEOUT_S`."""

    head_timeout_s = HEADER_TIMEOUT_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_timer: asyncio.TimerHandle | None = None
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

    def _watch_head(self) -> None:
        """Armed while the connection waits for a request head, disarmed once one arrived."""
        waiting = self.conn.their_state is h11.IDLE and not self.transport.is_closing()
        if waiting and self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)
        elif not waiting:
            self._stop_head_timer()

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def server_settings() -> dict[str, Any]:
    """The `uvicorn.Config` keyword arguments that bound clients (see the module docstring)."""
    return {"http": HeadDeadlineH11Protocol, "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
            "timeout_keep_alive": KEEP_ALIVE_S, "ws_max_size": WS_MAX_MESSAGE_BYTES}


# --- logs ----------------------------------------------------------------------------------------
_QUERY = re.compile(r"(/[^\s\"'?]*)\?[^\s\"']*")


def _scrub(value: Any) -> Any:
    return _QUERY.sub(r"\1?[query hidden]", value) if isinstance(value, str) else value


class HideQueryStrings(logging.Filter):
    """Drops the query string of every path a log line carries.

    A key may travel in `?api_key=` (browsers cannot set WebSocket headers), spelled in any
    percent-encoding; uvicorn logs the path with its query for the access log and for
    WebSocket upgrades. Matching the key's many spellings is a losing game; the query goes.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_scrub(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _scrub(v) for k, v in record.args.items()}
        record.msg = _scrub(record.msg)
        return True


def install_log_redaction() -> None:
    """On every logger that can carry a request path; handlers' records pass through these."""
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "orpheus_gateway"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, HideQueryStrings) for f in logger.filters):
            logger.addFilter(HideQueryStrings())
