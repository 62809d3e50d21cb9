"""Keeps API keys out of log lines (uvicorn logs WebSocket paths with their query)."""

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
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "orpheus_gateway"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactKeys) for f in logger.filters):
            logger.addFilter(RedactKeys())
