"""What every error means, declared once: its HTTP status, whether the request may be sent
again, and whether it counts against the endpoint that produced it (its circuit breaker).

Every surface (v1 NDJSON, OpenAI JSON/SSE, WebSocket) and every client (SDK, gateway
relaying a worker) classifies errors by reading these attributes; `docs/protocol.md`'s table
is checked against this enum by `tests/test_protocol.py`.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from .headers import HEADER_RETRY_AFTER


class ErrorCode(str, Enum):
    """Codes carried by `error` frames, WebSocket `error` messages and OpenAI error bodies.

    Attributes:
        status: the HTTP status of a response refused with this code (every HTTP surface).
        retryable: the same request may be sent again (elsewhere or later); no audio from the
            failed attempt may be kept.
        endpoint_fault: the endpoint that answered is unwell; feeds its circuit breaker.
        request_fault: the request itself is wrong and fails on any endpoint.
    """

    status: int
    retryable: bool
    endpoint_fault: bool
    request_fault: bool

    __str__ = str.__str__  # the wire value, in f-strings too, on every Python (3.10+)
    __format__ = str.__format__

    def __new__(cls, value: str, status: int, retryable: bool = False,
                endpoint_fault: bool = False, request_fault: bool = False) -> ErrorCode:
        member = str.__new__(cls, value)
        member._value_ = value
        member.status = status
        member.retryable = retryable
        member.endpoint_fault = endpoint_fault
        member.request_fault = request_fault
        return member

    # The request is wrong: fix it, do not retry it.
    INVALID_REQUEST = "invalid_request", 400, False, False, True
    UNKNOWN_PARAMETER = "unknown_parameter", 400, False, False, True
    UNKNOWN_VOICE = "unknown_voice", 400, False, False, True
    TEXT_TOO_LONG = "text_too_long", 400, False, False, True
    UNSUPPORTED_FORMAT = "unsupported_format", 400, False, False, True
    REQUEST_TOO_LARGE = "request_too_large", 413, False, False, True
    UNAUTHORIZED = "invalid_api_key", 401
    NOT_FOUND = "not_found", 404
    METHOD_NOT_ALLOWED = "method_not_allowed", 405
    # The caller's own limits: retry later, the endpoint is fine.
    RATE_LIMITED = "rate_limit_exceeded", 429, True
    # Busy or going away: retry elsewhere or later; the endpoint is not broken.
    OVERLOADED = "overloaded", 503, True
    DRAINING = "draining", 503, True
    NO_WORKERS = "no_workers", 503, True
    # The request's own deadline: sending it again would miss it again.
    DEADLINE_EXCEEDED = "deadline_exceeded", 504
    # The endpoint failed: retry elsewhere, and count it against the endpoint.
    UPSTREAM_LOST = "upstream_lost", 502, True, True
    INTERNAL = "internal_error", 500, True, True
    ENGINE_ERROR = "engine_error", 500, True, True
    # The client cancelled (WebSocket `cancel`); never an HTTP answer of its own.
    CANCELLED = "cancelled", 499

    @classmethod
    def of(cls, code: str | None, status: int | None = None) -> ErrorCode:
        """The member for a code read off the wire. An unknown or missing code is classified
        by the HTTP status it came with (a proxy's bare 502), else as `internal_error`."""
        if code is not None:
            try:
                return cls(code)
            except ValueError:
                pass
        return _BY_STATUS.get(status or 0, cls.INTERNAL if (status or 500) >= 500
                              else cls.INVALID_REQUEST)

    @property
    def openai_type(self) -> str:
        """OpenAI's error `type` for this code's status."""
        return _OPENAI_TYPES.get(self.status, "server_error" if self.status >= 500
                                 else "invalid_request_error")


# For a status that came without a code we know: the first member declared with it.
_BY_STATUS: dict[int, ErrorCode] = {}
for _member in ErrorCode:
    _BY_STATUS.setdefault(_member.status, _member)

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable_error",
    504: "timeout_error",
}


def error_body(code: ErrorCode, message: str, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error body: `{"error": {"message", "type", "code", "param"}}`."""
    return {"error": {"message": message, "type": code.openai_type, "code": code.value,
                      "param": param}}


class RequestError(Exception):
    """A request refused before streaming; the code decides the HTTP status."""

    def __init__(self, code: ErrorCode, message: str, param: str | None = None,
                 retry_after_s: float | None = None):
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message
        self.param = param
        self.retry_after_s = retry_after_s

    @property
    def status(self) -> int:
        return self.code.status

    @property
    def retryable(self) -> bool:
        return self.code.retryable

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, self.param)

    def headers(self) -> dict[str, str]:
        if self.retry_after_s is None:
            return {}
        return {HEADER_RETRY_AFTER: str(max(1, int(round(self.retry_after_s))))}
