"""Exceptions the SDK raises besides httpx's own network errors.

Each class also derives from the exception the user guide promises for that situation, so
code written against the guide keeps working:

| situation                          | class                   | also an instance of             |
| ---------------------------------- | ----------------------- | ------------------------------- |
| non-2xx answer at stream start     | `HTTPStatusError`       | `httpx.HTTPStatusError`         |
| stream ended without `eos`/`error` | `IncompleteStreamError` | `httpx.RemoteProtocolError`     |
| `error` frame from the server      | `StreamError`           | —                               |
| deadline (`timeout_s`), either side| `DeadlineExceededError` | `StreamError`, `TimeoutError`   |
| every endpoint's breaker is open   | `CircuitOpenError`      | `RuntimeError`                  |

All of them are `OrpheusError`s.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from orpheus_tts.protocol import ErrorCode


class OrpheusError(Exception):
    """Base class of every exception defined by the SDK."""


class StreamError(OrpheusError):
    """The server ended the stream with an `error` frame (or the SDK ended it, see subclasses).

    `retryable` means the whole request may be sent again: no audio from this stream should
    be kept. `endpoint` is the base URL that answered.
    """

    def __init__(
        self,
        code: str,
        message: str,
        retryable: bool = False,
        *,
        endpoint: str | None = None,
        request_id: str | None = None,
    ):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable
        self.endpoint = endpoint
        self.request_id = request_id

    @property
    def error_code(self) -> ErrorCode:
        return ErrorCode.of(self.code)


class DeadlineExceededError(StreamError, asyncio.TimeoutError):
    """The request's deadline passed (the server said so, or the SDK enforced `timeout_s`)."""

    def __init__(self, message: str, *, endpoint: str | None = None,
                 request_id: str | None = None):
        super().__init__(
            ErrorCode.DEADLINE_EXCEEDED, message, False, endpoint=endpoint, request_id=request_id
        )


class IncompleteStreamError(OrpheusError, httpx.RemoteProtocolError):
    """The stream broke the contract: it ended without a terminal frame, or chunks were missing.

    Raised instead of returning truncated audio. Also an `httpx.RemoteProtocolError`, so
    `except httpx.HTTPError` catches it like any other broken connection.
    """

    def __init__(self, message: str, *, endpoint: str | None = None,
                 request: httpx.Request | None = None):
        httpx.RemoteProtocolError.__init__(self, message, request=request)
        self.endpoint = endpoint


class HTTPStatusError(OrpheusError, httpx.HTTPStatusError):
    """A non-2xx answer at stream start, with the server's OpenAI-shaped error body parsed.

    `error` is the body's `error` object (`message`, `type`, `code`, `param`), or None when
    the body was not OpenAI-shaped; `retry_after_s` comes from `Retry-After`.
    """

    def __init__(self, response: httpx.Response, *, endpoint: str | None = None):
        error: dict[str, Any] | None = None
        try:
            body = response.json()
            if isinstance(body, dict) and isinstance(body.get("error"), dict):
                error = body["error"]
        except ValueError:
            pass
        detail = error.get("message") if error else response.text[:200]
        message = f"{response.status_code} {response.reason_phrase} from {endpoint}: {detail}"
        httpx.HTTPStatusError.__init__(self, message, request=response.request, response=response)
        self.error = error
        self.endpoint = endpoint
        retry_after = response.headers.get("Retry-After")
        try:
            self.retry_after_s: float | None = float(retry_after) if retry_after else None
        except ValueError:
            self.retry_after_s = None

    @property
    def status_code(self) -> int:
        return self.response.status_code

    @property
    def code(self) -> str | None:
        return self.error.get("code") if self.error else None

    @property
    def param(self) -> str | None:
        return self.error.get("param") if self.error else None

    @property
    def error_code(self) -> ErrorCode:
        """The body's code as an `ErrorCode` (classified by the status when unknown)."""
        return ErrorCode.of(self.code, self.status_code)


class CircuitOpenError(OrpheusError, RuntimeError):
    """Every endpoint's circuit breaker is open; `retry_in_s` says when one lets a probe in."""

    def __init__(self, endpoints: list[str], retry_in_s: float):
        super().__init__(
            f"Circuit open for endpoint {', '.join(endpoints)} "
            f"(next probe allowed in {max(0.0, retry_in_s):.1f}s)"
        )
        self.endpoints = endpoints
        self.retry_in_s = retry_in_s
