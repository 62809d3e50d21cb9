"""State and pages: voices, the system snapshot, metrics, health, and the playground."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from orpheus_tts import protocol as p

from .common import gateway_of

router = APIRouter()


@router.get(p.VOICES_PATH, summary="Voices served (by model pool), and the alias maps")
async def voices(request: Request) -> dict:
    gw = gateway_of(request)
    return gw.pools.voices_listing()


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


@router.get("/readyz", summary="Readiness: the gateway itself serves (with or without workers)")
async def readyz(request: Request) -> Response:
    """The gateway's own readiness: it answers, and holds requests while no worker is ready
    (scale from zero) or refuses them with a clear 503, so its Service keeps its endpoints and
    the autoscaler its signals. Whether a worker is ready is in the body and `/v1/system`."""
    gw = gateway_of(request)
    return JSONResponse({"ready": True,
                         "workers_ready": sum(len(pool.workers.eligible()) for pool in gw.pools),
                         "held": sum(pool.upstream.held for pool in gw.pools
                                     if pool.upstream is not None)})


@router.get("/", include_in_schema=False)
async def index() -> Response:
    page = resources.files("orpheus_gateway").joinpath("static/index.html")
    if not page.is_file():
        raise StarletteHTTPException(404)
    return HTMLResponse(page.read_text(encoding="utf-8"))
