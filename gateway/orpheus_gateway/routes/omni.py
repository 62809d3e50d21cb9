"""`WS /v1/audio/speech/stream`: vLLM-Omni's streaming-text speech protocol (see
`orpheus_tts.protocol.omni`). The key comes in a header or `?api_key=`; the protocol has no
message to carry one."""

from __future__ import annotations

from fastapi import APIRouter, WebSocket

from orpheus_tts import protocol as p
from orpheus_tts.protocol import omni as po

from ..middleware import KEY_SCOPE
from ..omni_session import OmniSession
from .common import gateway_of

router = APIRouter()


@router.websocket(po.OMNI_SPEECH_STREAM_PATH)
async def omni_speech_stream(websocket: WebSocket) -> None:
    gw = gateway_of(websocket)
    key_id = websocket.scope.get(KEY_SCOPE)
    await websocket.accept()
    if key_id is None:
        await websocket.close(p.WS_CLOSE_UNAUTHORIZED, "unauthorized")
        return
    await OmniSession(gw, websocket, key_id, gw.config.ws_idle_timeout_s).run()
