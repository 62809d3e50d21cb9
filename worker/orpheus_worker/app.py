"""FastAPI routes for the worker: thin glue over `WorkerService`."""

from __future__ import annotations

import uuid

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from orpheus_tts import protocol as P
from orpheus_tts import tracing

from .guard import WorkerGuard
from .service import WorkerService


def create_app(service: WorkerService) -> FastAPI:
    app = FastAPI(title="Orpheus TTS worker", docs_url=None, redoc_url=None)
    app.add_middleware(tracing.TraceContextMiddleware)
    app.state.service = service
    app.add_middleware(WorkerGuard, token=service.cfg.internal_token)

    @app.post(P.STREAM_PATH)
    async def stream(request: Request) -> Response:
        header_id = request.headers.get(P.HEADER_REQUEST_ID)
        body = await request.body()
        try:
            opened = service.open_stream(body, header_id)
        except P.RequestError as exc:
            service.metrics.errors.labels(code=exc.code).inc()
            headers = {**exc.headers(), P.HEADER_REQUEST_ID: header_id or uuid.uuid4().hex}
            return JSONResponse(exc.body(), status_code=exc.status, headers=headers)
        return StreamingResponse(opened.lines, media_type=P.NDJSON, headers=opened.headers)

    # Probes (the operator's pod template wires them): /startupz passes once vLLM and SNAC are
    # loaded, /livez fails once the engine died, /readyz is admission. /healthz only says the
    # HTTP server answers (for humans and scripts; no probe uses it).
    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/startupz")
    async def startupz() -> Response:
        if service.engine is None:
            return _probe(503, "loading")
        return _probe(200, "started")

    @app.get("/livez")
    async def livez() -> Response:
        if service.engine is not None and not service.engine.healthy:
            return _probe(503, "engine_dead")
        return _probe(200, "alive")

    @app.get("/readyz")
    async def readyz() -> Response:
        state = service.admission_state
        return _probe(200 if state == "ready" else 503, state)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get(P.SYSTEM_PATH)
    async def system() -> dict:
        return service.snapshot().model_dump()

    @app.get(P.VOICES_PATH)
    async def voices() -> dict:
        return service.voices_body()

    return app


def _probe(status: int, state: str) -> JSONResponse:
    headers = {P.HEADER_RETRY_AFTER: "1"} if status == 503 else None
    return JSONResponse({"status": state}, status_code=status, headers=headers)
