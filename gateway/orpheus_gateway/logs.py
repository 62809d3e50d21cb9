"""Gateway logging: API keys kept out of log lines (uvicorn logs WebSocket paths with their
query), and polls kept out of the access log."""

from __future__ import annotations

import logging
import re


class RedactKeys(logging.Filter):
    """Removes `api_key=...` from log lines."""

    _pattern = re.compile(r"(api_key=)[^&\s\"']+")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(self._pattern.sub(r"\1REDACTED", a) if isinstance(a, str) else a
                                for a in (record.args if isinstance(record.args, tuple)
                                          else (record.args,)))
        if isinstance(record.msg, str):
            record.msg = self._pattern.sub(r"\1REDACTED", record.msg)
        return True


def install_log_redaction() -> None:
    """Key redaction on the gateway's and uvicorn's loggers; polls in the access log at DEBUG."""
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "orpheus_gateway"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactKeys) for f in logger.filters):
            logger.addFilter(RedactKeys())
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, QuietPolls) for f in access.filters):
        access.addFilter(QuietPolls())


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
