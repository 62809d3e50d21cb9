"""`WS /v1/canopy/ws`: Canopy Labs' hosted protocol, for applications written against their
`orpheus-tts` client; `GET /health` next to it (the client pings it, without a key)."""

from __future__ import annotations

from fastapi import APIRouter, WebSocket

from orpheus_tts import protocol as p
from orpheus_tts.protocol import canopy as c

from ..canopy_session import CanopySession
from ..middleware import KEY_SCOPE
from .common import gateway_of

router = APIRouter()


@router.websocket(c.CANOPY_WS_PATH)
async def canopy_ws(websocket: WebSocket) -> None:
    gw = gateway_of(websocket)
    key_id = websocket.scope.get(KEY_SCOPE)
    if key_id is None:
        # No key on the upgrade (the middleware refused a wrong one with 401). Canopy's client
        # has no later way to bring one: refuse the upgrade (HTTP 403), which it raises as
        # `AuthenticationError` at once.
        gw.count_error(p.ErrorCode.UNAUTHORIZED)
        await websocket.close()
        return
    await websocket.accept()
    await CanopySession(gw, websocket, key_id, gw.config.ws_idle_timeout_s).run()


@router.get(c.CANOPY_HEALTH_PATH, summary="Liveness, where Canopy's client pings it")
async def health() -> dict:
    return {"status": "ok"}
