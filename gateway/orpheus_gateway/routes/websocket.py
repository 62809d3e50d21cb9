"""`WS /v1/tts/ws`: authenticate the session, then hand it to `WsSession`."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, WebSocket

from orpheus_tts import protocol as p

from ..core import Gateway
from ..middleware import KEY_SCOPE
from ..ws_session import WsSession
from .common import gateway_of

router = APIRouter()


@router.websocket(p.WS_PATH)
async def tts_ws(websocket: WebSocket) -> None:
    gw = gateway_of(websocket)
    key_id = websocket.scope.get(KEY_SCOPE)
    await websocket.accept()
    if key_id is None:
        key_id = await first_message_auth(websocket, gw)
        if key_id is None:
            await websocket.close(p.WS_CLOSE_UNAUTHORIZED, "unauthorized")
            return
    await websocket.send_text(p.WsReady().model_dump_json())
    await WsSession(gw, websocket, key_id, gw.config.ws_idle_timeout_s).run()


async def first_message_auth(websocket: WebSocket, gw: Gateway) -> str | None:
    """A browser's session: the first message must be `{"type":"auth","api_key":...}`."""
    try:
        async with asyncio.timeout(gw.config.ws_auth_timeout_s):
            raw = await websocket.receive_text()
        msg = p.parse_ws_message(raw)
    except (TimeoutError, p.RequestError, RuntimeError, KeyError):
        return None
    except Exception:  # noqa: BLE001 - a client that vanished mid-handshake
        return None
    if not isinstance(msg, p.WsAuth):
        return None
    return gw.keys.identify(msg.api_key)
