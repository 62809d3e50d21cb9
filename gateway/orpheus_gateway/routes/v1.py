"""`POST /v1/tts/stream`: the v1 NDJSON stream, relayed from a worker line by line."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import Response

from orpheus_tts import protocol as p

from ..error_shapes import REQUEST_ID_SCOPE
from ..middleware import KEY_SCOPE
from .common import (RelayResponse, gateway_of, open_watched, read_json, schema_body,
                     worker_header)

router = APIRouter()


@router.post(p.STREAM_PATH, summary="Stream speech as v1 NDJSON frames",
             openapi_extra=schema_body(p.TTSRequest),
             responses={200: {"content": {p.NDJSON: {}}}})
async def tts_stream(request: Request) -> Response:
    arrived = time.monotonic()
    gw = gateway_of(request)
    req = gw.validate(await read_json(request))
    request_id = req.request_id or request.scope[REQUEST_ID_SCOPE]
    try:
        opened = await open_watched(
            request, gw.start_stream(req, request.scope[KEY_SCOPE], "v1", arrived, request_id))
    except p.RequestError as exc:
        if exc.code is not p.ErrorCode.DEADLINE_EXCEEDED:
            raise
        gw.count_error(exc.code)
        # On v1 a deadline is always in-band (a worker can only report it after its 200), so
        # a client handles it one way: a stream whose one frame is the error.
        return Response(p.error_line(exc.code, exc.message), media_type=p.NDJSON,
                        headers={p.HEADER_REQUEST_ID: request_id})
    if opened is None:
        return Response(status_code=204)
    stream, watch = opened
    headers = {p.HEADER_REQUEST_ID: request_id,
               **p.load_headers(stream.pool.queue_depth(), stream.pool.workers.local_inflight()),
               **worker_header(stream)}
    return RelayResponse(stream.lines(), stream, watch, media_type=p.NDJSON, headers=headers,
                         audio_prefix=p.CHUNK_LINE_PREFIX)
