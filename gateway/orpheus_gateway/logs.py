"""Gateway logging: API keys kept out of log lines whatever their spelling, and polls kept
out of the access log.

A key may travel in `?api_key=` (browsers cannot set WebSocket headers), in any percent-
encoding (`api%5Fkey=`, `%61pi_key=`, a double-encoded value); uvicorn logs the path with its
query for the access log and for WebSocket upgrades. Matching the key's many spellings is a
losing game, so every query string is dropped from every path a log line carries.
"""

from __future__ import annotations

import logging
import re
from contextvars import ContextVar
from typing import Any

_QUERY = re.compile(r"(/[^\s\"'?]*)\?(?!\[query hidden\])[^\s\"']*")  # hidden once only


def _scrub(value: Any) -> Any:
    return _QUERY.sub(r"\1?[query hidden]", value) if isinstance(value, str) and "?" in value \
        else value


class HideQueryStrings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.args and isinstance(record.msg, str) and "?" in record.msg:
            # A query in the format itself may be completed by the arguments: hide it in the
            # finished message (a scrubbed format would no longer match its arguments).
            record.msg, record.args = _scrub(record.getMessage()), None
            return True
        if isinstance(record.args, tuple):
            record.args = tuple(_scrub(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _scrub(v) for k, v in record.args.items()}
        record.msg = _scrub(record.msg)
        return True


def install_log_redaction() -> None:
    """Query strings hidden on every logger whose records can carry a request path, and on
    the root logger's handlers, which every record that propagates passes through (a logger's
    filters do not see its children's records); polls in the access log at DEBUG; no ERROR
    line for a response cut on purpose."""
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "orpheus_gateway"):
        _add_once(logging.getLogger(name))
    for handler in logging.getLogger().handlers:
        _add_once(handler)
    server = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, QuietCuts) for f in server.filters):
        server.addFilter(QuietCuts())
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, QuietPolls) for f in access.filters):
        access.addFilter(QuietPolls())


def _add_once(filterer: logging.Filterer) -> None:
    if not any(isinstance(f, HideQueryStrings) for f in filterer.filters):
        filterer.addFilter(HideQueryStrings())


# Paths that pollers and probes hit every few seconds (autoscaler, Prometheus, kubelet).
POLL_PATHS = ("/v1/system", "/metrics", "/healthz", "/readyz")


class QuietPolls(logging.Filter):
    """Access-log lines of polls and probes are DEBUG: kept only when the access logger is
    set to DEBUG, so they do not bury the requests that matter."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and str(args[2]).startswith(POLL_PATHS):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


_UNFINISHED = "ASGI callable returned without completing response."
_cut_on_purpose: ContextVar[bool] = ContextVar("orpheus_cut_on_purpose", default=False)


def response_cut_on_purpose() -> None:
    """The response this task is sending is left unfinished on purpose (a failure after raw
    audio: the client must see a broken transfer, not a short file). Call it from the task that
    serves the request: uvicorn logs its "returned without completing response" from there."""
    _cut_on_purpose.set(True)


class QuietCuts(logging.Filter):
    """uvicorn's ERROR about an unfinished response, dropped when the gateway cut it on purpose
    (an ordinary event: a worker lost after audio); kept for any other response."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_cut_on_purpose.get() and record.getMessage() == _UNFINISHED)
