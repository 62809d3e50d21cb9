"""FastAPI glue: routes, the auth middleware and OpenAI-shaped error handlers.

Logic lives in `core`, `relay`, `openai_speech` and `ws`; this module only wires HTTP to it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from contextlib import asynccontextmanager, aclosing
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.datastructures import Headers, QueryParams
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orpheus_tts import protocol as p

from .auth import presented_key, unauthorized
from .config import GatewayConfig
from .core import ActiveStream, Gateway
from .openai_speech import (SpeechRequest, StreamAborted, body_for, content_type, early_error,
                            parse_speech_request, tts_body)
from .relay import error_line
from .ws import WsSession

log = logging.getLogger("orpheus_gateway")

# Reachable without a key: health and metrics only.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# Pages a person opens in a browser, which cannot add a header: their 401 asks the browser for
# the key (HTTP Basic, the key as password), and the browser then sends it with each request.
BROWSER_PATHS = frozenset({"/", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
BASIC_CHALLENGE = 'Basic realm="Orpheus TTS", charset="UTF-8"'

KEY_SCOPE = "orpheus.key_id"
REQUEST_ID_SCOPE = "orpheus.request_id"
MAX_BODY_BYTES = 1 << 20


def error_response(exc: p.RequestError, request_id: str | None = None,
                   challenge: str = "Bearer") -> JSONResponse:
    headers = exc.headers()
    if request_id:
        headers[p.HEADER_REQUEST_ID] = request_id
    if exc.status == 401:
        headers["WWW-Authenticate"] = challenge
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


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
            response = error_response(
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


class OwnedStreamingResponse(StreamingResponse):
    """A streaming response that owns an `ActiveStream`: whatever happens (finished, client
    gone, never started), the stream is closed once. `StreamAborted` leaves the response
    unterminated, so the server cuts the connection and the client sees a broken transfer."""

    def __init__(self, content: Any, owner: ActiveStream, **kwargs: Any):
        super().__init__(content, **kwargs)
        self.owner = owner

    async def stream_response(self, send: Send) -> None:
        try:
            await super().stream_response(send)
        except StreamAborted:
            return

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.owner.close()


async def _read_json(request: Request) -> Any:
    raw = bytearray()
    async for part in request.stream():
        raw += part
        if len(raw) > MAX_BODY_BYTES:
            raise p.RequestError(413, f"Request body is over {MAX_BODY_BYTES} bytes.")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise p.RequestError(400, "Request body is not valid JSON.") from None


async def _unless_disconnected(request: Request, opening: asyncio.Future) -> ActiveStream | None:
    """Wait for a stream to open, or give up (closing it) if the client leaves first."""
    async def client_gone() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(client_gone())
    try:
        await asyncio.wait({opening, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if opening.done():
        return opening.result()
    opening.cancel()
    results = await asyncio.gather(opening, return_exceptions=True)
    if isinstance(results[0], ActiveStream):
        await results[0].close()
    return None


def _worker_header(stream: ActiveStream) -> dict[str, str]:
    """`X-Orpheus-Worker` of the worker serving the stream, when it sent one."""
    name = stream.upstream.headers.get(p.HEADER_WORKER_ID)
    return {p.HEADER_WORKER_ID: name} if name else {}


def _schema_body(model: type) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": model.model_json_schema()}}}}


def create_app(config: GatewayConfig, gateway: Gateway | None = None) -> FastAPI:
    gw = gateway or Gateway(config)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        await gw.start()
        try:
            yield
        finally:
            await gw.stop()

    app = FastAPI(title="Orpheus TTS gateway", version="1", lifespan=lifespan)
    app.state.gateway = gw
    app.add_middleware(AuthMiddleware, gateway=gw)

    # --- errors: OpenAI's shape everywhere ---------------------------------------------------
    @app.exception_handler(p.RequestError)
    async def _request_error(request: Request, exc: p.RequestError) -> JSONResponse:
        gw.count_error(exc.code)
        return error_response(exc, request.scope.get(REQUEST_ID_SCOPE))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        message = {404: f"No route for {request.method} {request.url.path}.",
                   405: f"Method {request.method} is not allowed on {request.url.path}."
                   }.get(exc.status_code, str(exc.detail))
        response = error_response(p.RequestError(exc.status_code, message, code or "http_error"))
        for k, v in (exc.headers or {}).items():
            response.headers[k] = v
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0] if exc.errors() else {}
        loc = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body", "query"))
        return error_response(p.RequestError(
            400, f"Invalid value for '{loc}': {err.get('msg', 'invalid')}.", param=loc or None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(p.RequestError(500, "Internal error.", p.ErrorCode.INTERNAL))

    # --- streaming APIs ----------------------------------------------------------------------
    @app.post(p.STREAM_PATH, summary="Stream speech as v1 NDJSON frames",
              openapi_extra=_schema_body(p.TTSRequest),
              responses={200: {"content": {p.NDJSON: {}}}})
    async def tts_stream(request: Request) -> Response:
        arrived = time.monotonic()
        req = gw.validate(await _read_json(request))
        request_id = req.request_id or request.scope[REQUEST_ID_SCOPE]
        opening = asyncio.ensure_future(
            gw.start_stream(req, request.scope[KEY_SCOPE], "v1", arrived, request_id))
        try:
            stream = await _unless_disconnected(request, opening)
        except p.RequestError as exc:
            if exc.code != p.ErrorCode.DEADLINE_EXCEEDED:
                raise
            gw.count_error(exc.code)
            # The deadline is part of the stream contract: a stream with its error frame.
            return Response(error_line(exc.code, exc.message), media_type=p.NDJSON,
                            headers={p.HEADER_REQUEST_ID: request_id})
        if stream is None:
            return Response(status_code=204)

        async def body():
            async with aclosing(stream.lines()) as lines:
                async for line in lines:
                    yield line
                    if line.startswith(p.CHUNK_LINE_PREFIX):
                        stream.first_audio_sent()

        headers = {p.HEADER_REQUEST_ID: request_id, **p.load_headers(gw.queue_depth(),
                   sum(w.local_inflight for w in gw.pool)), **_worker_header(stream)}
        return OwnedStreamingResponse(body(), stream, media_type=p.NDJSON, headers=headers)

    @app.post("/v1/audio/speech", summary="OpenAI-compatible speech",
              openapi_extra=_schema_body(SpeechRequest),
              responses={200: {"content": {ct: {} for ct in
                                           ("audio/mpeg", "audio/wav", "audio/pcm", "audio/ogg",
                                            "audio/flac", "audio/aac", "text/event-stream")}}})
    async def speech(request: Request) -> Response:
        arrived = time.monotonic()
        sreq = parse_speech_request(await _read_json(request))
        try:
            req = gw.validate(tts_body(sreq))
        except p.RequestError as exc:
            if exc.param == "text":  # this API calls it `input`
                exc.param, exc.message = "input", exc.message.replace("'text'", "'input'")
            raise
        request_id = request.scope[REQUEST_ID_SCOPE]
        opening = asyncio.ensure_future(
            gw.start_stream(req, request.scope[KEY_SCOPE], "openai", arrived, request_id))
        stream = await _unless_disconnected(request, opening)
        if stream is None:
            return Response(status_code=204)
        problem = early_error(stream)
        if problem is not None:
            await stream.close()
            raise problem
        return OwnedStreamingResponse(body_for(sreq, stream), stream,
                                      media_type=content_type(sreq),
                                      headers={p.HEADER_REQUEST_ID: request_id,
                                               **_worker_header(stream)})

    @app.websocket(p.WS_PATH)
    async def tts_ws(websocket: WebSocket) -> None:
        key_id = websocket.scope.get(KEY_SCOPE)
        await websocket.accept()
        if key_id is None:
            key_id = await _first_message_auth(websocket, gw)
            if key_id is None:
                await websocket.close(p.WS_CLOSE_UNAUTHORIZED, "unauthorized")
                return
        await websocket.send_text(p.WsReady().model_dump_json())
        await WsSession(gw, websocket, key_id, config.ws_idle_timeout_s).run()

    # --- state -------------------------------------------------------------------------------
    @app.get(p.VOICES_PATH, summary="Voices served, and the OpenAI alias map")
    async def voices() -> dict:
        return gw.voices.listing(gw.known_voices())

    @app.get(p.SYSTEM_PATH, summary="Gateway snapshot (the autoscaler's input)",
             response_model=p.SystemSnapshot)
    async def system() -> dict:
        return gw.snapshot().model_dump(mode="json")

    @app.get("/metrics", include_in_schema=True, summary="Prometheus metrics")
    async def metrics() -> Response:
        gw.refresh_gauges()
        return Response(generate_latest(gw.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: at least one worker can take a stream")
    async def readyz() -> Response:
        if gw.ready():
            return JSONResponse({"ready": True})
        return error_response(p.RequestError(503, "No worker is available.",
                                             p.ErrorCode.NO_WORKERS, retry_after_s=1))

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        page = resources.files("orpheus_gateway").joinpath("static/index.html")
        if not page.is_file():
            raise StarletteHTTPException(404)
        return HTMLResponse(page.read_text(encoding="utf-8"))

    return app


async def _first_message_auth(websocket: WebSocket, gw: Gateway) -> str | None:
    """A browser's session: the first message must be `{"type":"auth","api_key":...}`."""
    try:
        raw = await asyncio.wait_for(websocket.receive_text(), gw.config.ws_auth_timeout_s)
        msg = p.parse_ws_message(raw)
    except (asyncio.TimeoutError, p.RequestError, RuntimeError, KeyError):
        return None
    except Exception:  # noqa: BLE001 - a client that vanished mid-handshake
        return None
    if not isinstance(msg, p.WsAuth):
        return None
    return gw.keys.identify(msg.api_key)


class RedactKeys(logging.Filter):
    """Removes `api_key=...` from log lines (uvicorn logs WebSocket paths with the query)."""

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
