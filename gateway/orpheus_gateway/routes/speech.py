"""`POST /v1/audio/speech`: OpenAI's speech API (raw audio or SSE) over the v1 stream."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import Response

from orpheus_tts import protocol as p

from ..encoders import CONTENT_TYPES
from ..error_shapes import REQUEST_ID_SCOPE
from ..middleware import KEY_SCOPE
from ..openai_speech import (SSE_CONTENT_TYPE, SpeechRequest, body_for, content_type,
                             early_error, parse_speech_request, tts_body)
from .common import (RelayResponse, gateway_of, open_watched, read_json, schema_body,
                     worker_header)

router = APIRouter()
SPEECH_RESPONSES: dict = {200: {"content": {ct: {} for ct in
                                            (*CONTENT_TYPES.values(), SSE_CONTENT_TYPE)}}}


@router.post(p.SPEECH_PATH, summary="OpenAI-compatible speech",
             openapi_extra=schema_body(SpeechRequest), responses=SPEECH_RESPONSES)
async def speech(request: Request) -> Response:
    arrived = time.monotonic()
    gw = gateway_of(request)
    sreq = parse_speech_request(await read_json(request))
    body, extra_headers = tts_body(sreq)
    try:
        req = gw.validate(body)
    except p.RequestError as exc:
        if exc.param == "text":  # this API calls it `input`
            exc.param, exc.message = "input", exc.message.replace("'text'", "'input'")
        raise
    request_id = request.scope[REQUEST_ID_SCOPE]
    opened = await open_watched(
        request, gw.start_stream(req, request.scope[KEY_SCOPE], "openai", arrived, request_id))
    if opened is None:
        return Response(status_code=204)
    stream, watch = opened
    problem = early_error(stream)
    if problem is not None:
        watch.stop()
        await stream.close()
        raise problem
    return RelayResponse(body_for(sreq, stream), stream, watch, media_type=content_type(sreq),
                         headers={p.HEADER_REQUEST_ID: request_id, **worker_header(stream),
                                  **extra_headers})
