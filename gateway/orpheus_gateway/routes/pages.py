"""State and pages: voices, the system snapshot, metrics, health, and the playground."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from orpheus_tts import protocol as p

from ..error_shapes import json_error
from .common import gateway_of

router = APIRouter()


@router.get(p.VOICES_PATH, summary="Voices served, and the OpenAI alias map")
async def voices(request: Request) -> dict:
    gw = gateway_of(request)
    return gw.voices.listing(gw.known_voices())


@router.get(p.SYSTEM_PATH, summary="Gateway snapshot (the autoscaler's input)",
            response_model=p.SystemSnapshot)
async def system(request: Request) -> dict:
    return gateway_of(request).snapshot().model_dump(mode="json")


@router.get("/metrics", include_in_schema=True, summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    gw = gateway_of(request)
    gw.refresh_gauges()
    return Response(generate_latest(gw.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: at least one worker can take a stream")
async def readyz(request: Request) -> Response:
    if gateway_of(request).ready():
        return JSONResponse({"ready": True})
    return json_error(p.RequestError(p.ErrorCode.NO_WORKERS, "No worker is available.",
                                     retry_after_s=1))


@router.get("/", include_in_schema=False)
async def index() -> Response:
    page = resources.files("orpheus_gateway").joinpath("static/index.html")
    if not page.is_file():
        raise StarletteHTTPException(404)
    return HTMLResponse(page.read_text(encoding="utf-8"))
