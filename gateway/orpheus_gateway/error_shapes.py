"""How an error looks on each API surface. What it *means* (status, retryable, fault) is
`orpheus_tts.protocol.ErrorCode`'s; this module only renders it:

- refused before streaming, on any HTTP surface (v1, OpenAI): `json_error` — the code's status
  with OpenAI's error body, `Retry-After` when the error has one, `X-Request-ID`;
- v1 NDJSON during a stream: `p.error_line` — an `error` frame;
- OpenAI SSE during a stream: `sse_error` — an `error` event with OpenAI's error object;
- WebSocket: `ws_error` — an `error` message for the utterance.
"""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from orpheus_tts import protocol as p

log = logging.getLogger("orpheus_gateway")

REQUEST_ID_SCOPE = "orpheus.request_id"


def json_error(exc: p.RequestError, request_id: str | None = None,
               challenge: str = "Bearer") -> JSONResponse:
    headers = exc.headers()
    if request_id:
        headers[p.HEADER_REQUEST_ID] = request_id
    if exc.code is p.ErrorCode.UNAUTHORIZED:
        headers["WWW-Authenticate"] = challenge
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


def sse_error(code: p.ErrorCode, message: str) -> bytes:
    return sse_event({"type": "error", **p.error_body(code, message)})


def sse_event(obj: dict) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def ws_error(utterance_id: str | None, code: p.ErrorCode, message: str,
             retryable: bool | None = None) -> p.WsError:
    return p.WsError(utterance_id=utterance_id, code=code, message=message,
                     retryable=code.retryable if retryable is None else retryable)


def refusal_from_frame(frame: p.ErrorFrame) -> p.RequestError:
    """An `error` frame that arrived before anything was sent, as an HTTP refusal."""
    code = frame.error_code
    return p.RequestError(code, frame.message,
                          retry_after_s=1.0 if code.retryable else None)


def install_error_handlers(app: FastAPI, count_error) -> None:
    """OpenAI's error shape for every error the framework or a route raises."""

    @app.exception_handler(p.RequestError)
    async def _request_error(request: Request, exc: p.RequestError) -> JSONResponse:
        count_error(exc.code)
        return json_error(exc, request.scope.get(REQUEST_ID_SCOPE))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = p.ErrorCode.of(None, exc.status_code)  # 404 not_found, 405 method_not_allowed
        message = {404: f"No route for {request.method} {request.url.path}.",
                   405: f"Method {request.method} is not allowed on {request.url.path}."
                   }.get(exc.status_code, str(exc.detail))
        response = json_error(p.RequestError(code, message),
                              request.scope.get(REQUEST_ID_SCOPE))
        for k, v in (exc.headers or {}).items():
            response.headers[k] = v
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0] if exc.errors() else {}
        loc = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body", "query"))
        return json_error(p.RequestError(
            p.ErrorCode.INVALID_REQUEST, f"Invalid value for '{loc}': {err.get('msg', 'invalid')}.",
            param=loc or None), request.scope.get(REQUEST_ID_SCOPE))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return json_error(p.RequestError(p.ErrorCode.INTERNAL, "Internal error."),
                          request.scope.get(REQUEST_ID_SCOPE))
