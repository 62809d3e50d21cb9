"""Every `ErrorCode` through every API surface: v1 NDJSON, OpenAI JSON and SSE, WebSocket.

The expected status and shape come from the enum alone (`code.status`, `code.retryable`,
`code.openai_type`); there is no per-surface table here or in the product code. A fake worker
plays each code (`[[fake ...]]` directives), through a real gateway.
"""

from __future__ import annotations

import json

import httpx
import pytest
from websockets.asyncio.client import connect

from orpheus_gateway.error_shapes import json_error, sse_error, ws_error
from orpheus_tts import protocol as p
from tests.gateway.conftest import auth

CODES = list(p.ErrorCode)


def fails_in(code: p.ErrorCode, after: int) -> str:
    return f"Say it. [[fake kind=error chunks={after} code={code.value} message=scripted]]"


def refuses_with(code: p.ErrorCode) -> str:
    return (f"Say it. [[fake kind=http_error status={code.status} code={code.value} "
            f"message=scripted]]")


def speech(text: str, **kw) -> dict:
    return {"model": "tts-1", "input": text, "voice": "alloy", "response_format": "pcm", **kw}


def ndjson(r: httpx.Response) -> list[dict]:
    return [json.loads(line) for line in r.text.splitlines() if line.strip()]


def sse(r: httpx.Response) -> list[dict]:
    return [json.loads(block[len("data: "):]) for block in r.text.split("\n\n") if block]


def openai_error(code: p.ErrorCode) -> dict:
    return {"message": "scripted", "type": code.openai_type, "code": code.value, "param": None}


@pytest.fixture
def gw(fake_server, gateway_server):
    srv = fake_server(chunks=2, chunk_samples=240)
    # A breaker that never opens: each code is judged on its own, not on the ones before it.
    gateway = gateway_server([srv.url], breaker_failures=10_000)
    gateway.wait_polled()
    return gateway


@pytest.mark.parametrize("code", CODES, ids=str)
def test_each_surface_renders_the_code_from_the_enum(code):
    err = p.RequestError(code, "scripted", retry_after_s=2 if code.retryable else None)
    response = json_error(err, "rid")
    assert response.status_code == code.status
    assert json.loads(response.body) == {"error": openai_error(code)}
    assert (p.HEADER_RETRY_AFTER in response.headers) is code.retryable
    frame = p.decode_frame(p.error_line(code, "scripted"))
    assert (frame.code, frame.retryable) == (code.value, code.retryable)
    event = sse_error(code, "scripted")
    assert event.startswith(b"data: ") and event.endswith(b"\n\n")
    assert json.loads(event[len(b"data: "):]) == {"type": "error", "error": openai_error(code)}
    msg = json.loads(ws_error("u1", code, "scripted").model_dump_json())
    assert msg == {"type": "error", "utterance_id": "u1", "code": code.value,
                   "message": "scripted", "retryable": code.retryable}


def test_every_code_after_audio_on_every_streaming_surface(gw, client):
    for code in CODES:
        frames = ndjson(client.post(gw.url + p.STREAM_PATH, headers=auth(),
                                    json={"text": fails_in(code, 1)}))
        assert [f["type"] for f in frames] == ["chunk", "metrics", "error"], code
        assert (frames[-1]["code"], frames[-1]["retryable"]) == (code.value, code.retryable)

        events = sse(client.post(gw.url + p.SPEECH_PATH, headers=auth(),
                                 json=speech(fails_in(code, 1), stream_format="sse")))
        assert [e["type"] for e in events] == ["speech.audio.delta", "error"], code
        assert events[-1]["error"] == openai_error(code)

        # Raw audio cannot carry an error once it started: the transfer is cut.
        with pytest.raises(httpx.RemoteProtocolError):
            client.post(gw.url + p.SPEECH_PATH, headers=auth(), json=speech(fails_in(code, 1)))


def test_every_code_before_audio_is_its_status_on_the_http_surfaces(gw, client):
    """A worker's first frame is the error, or it refuses over HTTP. Retryable codes move the
    request to another worker; with none left the answer is `no_workers`'s. The rest are
    the code's own status (v1 keeps a stream's errors in-band: a stream of that one frame)."""
    gone = p.ErrorCode.NO_WORKERS
    for code in CODES:
        expect = gone if code.retryable else code
        r = client.post(gw.url + p.SPEECH_PATH, headers=auth(), json=speech(fails_in(code, 0)))
        assert r.status_code == expect.status, code
        assert r.json()["error"]["code"] == expect.value
        assert r.json()["error"]["type"] == expect.openai_type

        r = client.post(gw.url + p.STREAM_PATH, headers=auth(), json={"text": fails_in(code, 0)})
        if code.retryable:
            assert (r.status_code, r.json()["error"]["code"]) == (gone.status, gone.value), code
        else:
            assert r.status_code == 200 and ndjson(r)[-1]["code"] == code.value, code

        # Refused over HTTP: a request fault is the client's answer on both surfaces; any other
        # refusal is the worker's problem and the request moves on (none left: `no_workers`).
        expect = code if code.request_fault else gone
        for path, body in ((p.STREAM_PATH, {"text": refuses_with(code)}),
                           (p.SPEECH_PATH, speech(refuses_with(code)))):
            r = client.post(gw.url + path, headers=auth(), json=body)
            assert r.status_code == expect.status, (code, path)
            assert r.json()["error"]["code"] == expect.value
            forget_retry_after(gw)


def forget_retry_after(gw) -> None:
    """A 429/503 refusal cools the worker down (its `Retry-After`); the next code should not
    find it cooling."""
    def reset() -> None:
        for w in gw.gateway.pool:
            w.cooldown_until = 0.0
    gw.call(reset)


async def test_every_code_on_the_websocket(gw):
    async with connect(gw.ws_url + p.WS_PATH, additional_headers=auth(), open_timeout=5) as ws:
        assert json.loads(await ws.recv()) == {"type": "ready"}
        for code in CODES:
            for after, expect in ((1, code), (0, p.ErrorCode.NO_WORKERS if code.retryable
                                              else code)):
                uid = f"{code.value}-{after}"
                await ws.send(json.dumps({"type": "speak", "utterance_id": uid,
                                          "text": fails_in(code, after)}))
                audio = 0
                while True:
                    message = await ws.recv()
                    if isinstance(message, bytes):
                        audio += 1
                        continue
                    msg = json.loads(message)
                    if msg["type"] in p.WS_TERMINAL_TYPES:
                        break
                assert audio == after, uid
                assert msg["type"] == "error" and msg["utterance_id"] == uid
                assert (msg["code"], msg["retryable"]) == (expect.value, expect.retryable), uid
