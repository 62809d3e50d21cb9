"""A caller's `traceparent` reaches the worker through the real gateway when no tracer provider
is installed (spans are `NO_SPAN` then): the v1 stream, the OpenAI speech route and the
WebSocket API each carry the caller's trace id on the worker request."""

from __future__ import annotations

import json

from websockets.asyncio.client import connect

from orpheus_tts import protocol as p
from orpheus_tts import tracing
from tests.gateway.conftest import auth

CALLER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TRACE_ID = CALLER.split("-")[1]


def trace_ids(worker) -> list[str | None]:
    return [(r.headers.get("traceparent") or "--").split("-")[1] or None
            for r in worker.stream_requests]


def test_a_callers_trace_reaches_the_worker_over_http(fake_server, gateway_server, client):
    assert not tracing.recording(), "a tracer provider is installed in this process"
    worker = fake_server()
    gw = gateway_server([worker.url])
    gw.wait_polled()
    for path, body in ((p.STREAM_PATH, {"text": "hello"}),
                       (p.SPEECH_PATH, {"model": "tts-1", "input": "hello", "voice": "tara",
                                        "response_format": "pcm"})):
        r = client.post(gw.url + path, json=body, headers={**auth(), "traceparent": CALLER})
        assert r.status_code == 200, r.text
    assert client.post(gw.url + p.STREAM_PATH, json={"text": "untraced"},
                       headers=auth()).status_code == 200
    assert trace_ids(worker) == [TRACE_ID, TRACE_ID, None]


async def test_a_callers_trace_reaches_the_worker_over_the_websocket(fake_server,
                                                                    gateway_server):
    worker = fake_server()
    gw = gateway_server([worker.url])
    gw.wait_polled()
    async with connect(gw.ws_url + p.WS_PATH, open_timeout=5,
                       additional_headers={**auth(), "traceparent": CALLER}) as ws:
        assert json.loads(await ws.recv()) == {"type": "ready"}
        await ws.send(json.dumps({"type": "speak", "utterance_id": "u1", "text": "hello"}))
        while True:
            msg = await ws.recv()
            if isinstance(msg, str) and json.loads(msg)["type"] in p.WS_TERMINAL_TYPES:
                assert json.loads(msg)["type"] == "done", msg
                break
    assert trace_ids(worker) == [TRACE_ID]
