"""The v1 request (`POST /v1/tts/stream` body) and its validation against a server's limits."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ErrorCode, RequestError
from .headers import REQUEST_ID_PATTERN

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_TIMEOUT_S = 300.0
DEFAULT_MAX_TEXT_CHARS = 4_000
MIN_REPETITION_PENALTY = 1.1  # below this Orpheus audio degrades; the contract rejects it


ECHO_MAX_CHARS = 64  # how much of a caller's input an error message may repeat
MAX_TOP_K = 1000


def clip(value: object, limit: int = ECHO_MAX_CHARS) -> str:
    """A caller's value as an error message may quote it: at most `limit` characters."""
    text = str(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


class TTSRequest(BaseModel):
    """Body of `POST /v1/tts/stream`. Unknown keys are refused by name.

    Types are strict: `"5"` or `true` is not an integer, `"0.5"` not a number (an integer is a
    number); NaN and infinities are refused.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, strict=True,
                              allow_inf_nan=False)

    text: str = Field(min_length=1, description="Text to speak; at most the server's limit.")
    voice: str | None = Field(default=None, description="Voice name or OpenAI alias.")
    model: str | None = Field(
        default=None, min_length=1, max_length=256,
        description="A served model name (GET /v1/models): picks the gateway's model pool. "
        "Unset: the pool serving `voice`, else the default pool. Workers ignore it.")
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0, le=MAX_TOP_K, description="0 disables top-k.")
    max_tokens: int | None = Field(default=None, ge=1, le=65_536)
    repetition_penalty: float | None = Field(default=None, ge=MIN_REPETITION_PENALTY, le=2.0)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    timeout_s: float | None = Field(default=None, gt=0.0, description="Capped by the server.")
    request_id: str | None = Field(
        default=None, pattern=REQUEST_ID_PATTERN,
        description="1-128 visible ASCII characters; echoed in X-Request-ID.")

    @field_validator("text")
    @classmethod
    def _text_not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("text must contain something to speak")
        return v

    def sampling(self) -> dict[str, Any]:
        """The sampling parameters the caller set (unset ones are left to the engine)."""
        keys = ("temperature", "top_p", "top_k", "max_tokens", "repetition_penalty", "seed")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


REQUEST_FIELDS = frozenset(TTSRequest.model_fields)


def validation_to_request_error(exc: ValidationError) -> RequestError:
    """Turn pydantic's first complaint into a 400 that names the parameter."""
    err = exc.errors()[0]
    loc = clip(".".join(str(p) for p in err.get("loc", ()))) or None
    if err.get("type") == "extra_forbidden":
        return RequestError(ErrorCode.UNKNOWN_PARAMETER, f"Unknown parameter: '{loc}'.",
                            param=loc)
    if err.get("type") == "missing":
        return RequestError(ErrorCode.INVALID_REQUEST, f"Missing required parameter: '{loc}'.",
                            param=loc)
    return RequestError(ErrorCode.INVALID_REQUEST, f"Invalid value for '{loc}': {err.get('msg')}.",
                        param=loc)


def parse_request(
    body: Any,
    *,
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS,
    max_timeout_s: float = DEFAULT_MAX_TIMEOUT_S,
) -> TTSRequest:
    """Validate a decoded JSON body against the contract and the server's limits.

    Raises `RequestError` (a 4xx) for anything wrong; never anything else.
    """
    if not isinstance(body, dict):
        raise RequestError(ErrorCode.INVALID_REQUEST, "Request body must be a JSON object.")
    try:
        req = TTSRequest.model_validate(body)
    except ValidationError as exc:
        raise validation_to_request_error(exc) from None
    if len(req.text) > max_text_chars:
        raise RequestError(
            ErrorCode.TEXT_TOO_LONG,
            f"'text' is {len(req.text)} characters; the limit is {max_text_chars}.",
            param="text",
        )
    if req.timeout_s is not None and req.timeout_s > max_timeout_s:
        req = req.model_copy(update={"timeout_s": max_timeout_s})
    return req


def parse_json_body(raw: bytes | str) -> Any:
    """Decode a JSON body; invalid JSON is a 400, and so is JSON nested too deeply for the
    parser (thousands of `[`), which must not become a 500."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise RequestError(ErrorCode.INVALID_REQUEST, "Request body is not valid JSON.") from None
    except RecursionError:
        raise RequestError(ErrorCode.INVALID_REQUEST,
                           "Request body is nested too deeply.") from None


def parse_json_message(raw: bytes | str) -> Any:
    """`parse_json_body` for a WebSocket message: the same bounds, the text says "Message"."""
    try:
        return parse_json_body(raw)
    except RequestError as exc:
        raise RequestError(ErrorCode.INVALID_REQUEST,
                           exc.message.replace("Request body", "Message")) from None


def parse_request_bytes(raw: bytes, **limits: Any) -> TTSRequest:
    """`parse_request` for a raw body: invalid JSON is a 400 too."""
    return parse_request(parse_json_body(raw), **limits)
