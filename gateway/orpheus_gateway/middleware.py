"""The ASGI middleware in front of every route: request ids and API keys."""

from __future__ import annotations

import uuid

from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, QueryParams
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orpheus_tts import protocol as p

from .auth import presented_key, unauthorized
from .core import Gateway
from .error_shapes import REQUEST_ID_SCOPE, json_error

# Reachable without a key: health and metrics only.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# Pages a person opens in a browser, which cannot add a header: their 401 asks the browser for
# the key (HTTP Basic, the key as password), and the browser then sends it with each request.
BROWSER_PATHS = frozenset({"/", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
BASIC_CHALLENGE = 'Basic realm="Orpheus TTS", charset="UTF-8"'

KEY_SCOPE = "orpheus.key_id"


class AuthMiddleware:
    """Every path but `PUBLIC_PATHS` needs a valid key; also stamps `X-Request-ID`.

    A 401 on `BROWSER_PATHS` challenges with HTTP Basic, so a browser asks for the key.

    A WebSocket that brings no key at all is let through to authenticate with its first
    message (browsers cannot set headers on a WebSocket); a wrong key is refused with 401.
    """

    def __init__(self, app: ASGIApp, gateway: Gateway):
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = headers.get(p.HEADER_REQUEST_ID) or ""
        if not p.is_valid_request_id(request_id):
            request_id = uuid.uuid4().hex
        scope[REQUEST_ID_SCOPE] = request_id
        if scope["type"] == "http":
            send = _with_request_id(send, request_id)
        if scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        is_ws = scope["type"] == "websocket"
        key = presented_key(headers, QueryParams(scope.get("query_string", b"")) if is_ws else None)
        key_id = self.gateway.keys.identify(key)
        if key_id is None and not (is_ws and key is None):
            self.gateway.count_error(p.ErrorCode.UNAUTHORIZED)
            response = json_error(
                unauthorized(key is not None), request_id,
                BASIC_CHALLENGE if scope["path"] in BROWSER_PATHS else "Bearer")
            if is_ws:
                await _deny_websocket(scope, send, response)
            else:
                await response(scope, receive, send)
            return
        scope[KEY_SCOPE] = key_id
        await self.app(scope, receive, send)


def _with_request_id(send: Send, request_id: str) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            names = {k.lower() for k, _ in message.get("headers", [])}
            if b"x-request-id" not in names:
                message = dict(message)
                message["headers"] = [*message.get("headers", []),
                                      (b"x-request-id", request_id.encode("latin-1"))]
        await send(message)
    return wrapped


async def _deny_websocket(scope: Scope, send: Send, response: JSONResponse) -> None:
    if "websocket.http.response" in scope.get("extensions", {}):
        await send({"type": "websocket.http.response.start", "status": response.status_code,
                    "headers": response.raw_headers})
        await send({"type": "websocket.http.response.body", "body": response.body})
    else:
        await send({"type": "websocket.close", "code": p.WS_CLOSE_UNAUTHORIZED})
