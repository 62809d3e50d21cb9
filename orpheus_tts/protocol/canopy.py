"""Canopy Labs' hosted WebSocket protocol, as its `orpheus-tts` 0.1.6 client speaks it.

Served at `CANOPY_WS_PATH` so that applications written against that client run unchanged
against the gateway (docs/gateway.md, "Canopy's WebSocket protocol"). The shapes below are
read from the client's source (PyPI `orpheus-tts` 0.1.6, MIT):

- The upgrade carries `Authorization: Api-Key KEY`; a refused key is an HTTP 401/403 on the
  upgrade, which the client raises as `AuthenticationError` at once.
- The client sends one JSON text message per request, `CanopyRequest`. With `request_id` the
  socket is multiplexed (many requests at once); without it, legacy (one at a time).
- Audio is binary, s16le mono at `CANOPY_SAMPLE_RATE` (48 kHz). Legacy: the PCM alone.
  Multiplexed: `CanopyAccepted` first, then each binary message is the 4-byte big-endian
  server request id followed by PCM.
- Every request ends with exactly one terminal text message: `{"done": true}` or
  `{"error": "..."}` (multiplexed: with `client_request_id` and `server_request_id`). The
  client classifies an error whose text contains "auth" or "key" as `AuthenticationError`.
- `GET /health` on the same host answers without a key (the client pings it per request).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ErrorCode, RequestError
from .request import parse_json_message, validation_to_request_error

CANOPY_WS_PATH = "/v1/canopy/ws"
CANOPY_HEALTH_PATH = "/health"
CANOPY_SAMPLE_RATE = 48_000
SERVER_ID_BYTES = 4
MAX_SERVER_ID = 2**32 - 1


class CanopyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1)
    voice: str | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=65_536)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    repetition_penalty: float | None = Field(default=None, le=2.0)
    request_id: str | None = Field(default=None, min_length=1, max_length=128)

    @property
    def multiplexed(self) -> bool:
        return self.request_id is not None

    def tts_body(self) -> dict[str, Any]:
        """The v1 request this becomes (the gateway then validates it as any other)."""
        body = self.model_dump(exclude_none=True, exclude={"request_id"})
        body["text"] = body.pop("prompt")
        return body


def parse_canopy_request(raw: str | bytes) -> CanopyRequest:
    obj = parse_json_message(raw)
    if not isinstance(obj, dict):
        raise RequestError(ErrorCode.INVALID_REQUEST, "Message must be a JSON object.")
    try:
        return CanopyRequest.model_validate(obj)
    except ValidationError as exc:
        raise validation_to_request_error(exc) from None


def client_request_id(raw: str | bytes) -> str | None:
    """The `request_id` of a message that failed validation, to address its error."""
    try:
        obj = parse_json_message(raw)
    except RequestError:
        return None
    rid = obj.get("request_id") if isinstance(obj, dict) else None
    return rid if isinstance(rid, str) and 0 < len(rid) <= 128 else None


def accepted(server_id: int, client_id: str) -> str:
    return json.dumps({"type": "accepted", "server_request_id": server_id,
                       "client_request_id": client_id})


def done(server_id: int | None = None, client_id: str | None = None) -> str:
    return json.dumps({"done": True, **_ids(server_id, client_id)})


def error(message: str, server_id: int | None = None, client_id: str | None = None) -> str:
    return json.dumps({"error": message, **_ids(server_id, client_id)})


def _ids(server_id: int | None, client_id: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if client_id is not None:
        out["client_request_id"] = client_id
    if server_id is not None:
        out["server_request_id"] = server_id
    return out


def audio(pcm: bytes, server_id: int | None = None) -> bytes:
    """A binary audio message: legacy is the PCM; multiplexed prefixes the server id."""
    if server_id is None:
        return pcm
    return server_id.to_bytes(SERVER_ID_BYTES, "big") + pcm
