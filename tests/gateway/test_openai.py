"""`POST /v1/audio/speech` through the real `openai` client (sync and async) and raw HTTP."""

from __future__ import annotations

import base64
import io
import json
import logging

import av
import httpx
import openai
import pytest

from orpheus_tts import protocol as p
from tests.gateway.conftest import API_KEY, auth
from tests.support.fake_server import Behaviour

CHUNKS, CHUNK_SAMPLES = 6, 2400
EXPECTED_SAMPLES = CHUNKS * CHUNK_SAMPLES  # 0.6 s at 24 kHz
MP3_SLACK = 2 * 1152  # encoder delay + padding of the last frame


@pytest.fixture
def gw(fake_server, gateway_server):
    srv = fake_server(chunks=CHUNKS, chunk_samples=CHUNK_SAMPLES, chunk_delay_ms=5)
    gateway = gateway_server([srv.url])
    gateway.wait_polled()
    gateway.worker = srv
    return gateway


def decoded_samples(data: bytes) -> tuple[int, int]:
    with av.open(io.BytesIO(data)) as container:
        frames = list(container.decode(audio=0))
    return sum(f.samples for f in frames), frames[0].sample_rate


def check_audio(fmt: str, data: bytes, srv) -> None:
    if fmt == "pcm":
        assert data == srv.expected_pcm(CHUNKS)
        return
    if fmt == "wav":
        assert data[:4] == b"RIFF" and data[44:] == srv.expected_pcm(CHUNKS)
    n, rate = decoded_samples(data)
    assert rate == p.SAMPLE_RATE
    if fmt == "wav":
        assert n == EXPECTED_SAMPLES
    else:
        assert EXPECTED_SAMPLES <= n <= EXPECTED_SAMPLES + MP3_SLACK, n


@pytest.mark.parametrize("fmt", ["pcm", "wav", "mp3"])
def test_openai_client_sync_streams(gw, fmt):
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=API_KEY, max_retries=0)
    with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input="Hello there.", response_format=fmt) as resp:
        assert resp.headers["content-type"] == {"pcm": "audio/pcm", "wav": "audio/wav",
                                                "mp3": "audio/mpeg"}[fmt]
        parts = list(resp.iter_bytes())
    check_audio(fmt, b"".join(parts), gw.worker)
    assert gw.worker.stream_requests[-1].body["voice"] == "tara"


@pytest.mark.parametrize("fmt", ["pcm", "wav", "mp3"])
async def test_openai_client_async_streams(gw, fmt):
    client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=API_KEY, max_retries=0)
    async with client.audio.speech.with_streaming_response.create(
            model="gpt-4o-mini-tts", voice="nova", input="Hello there.",
            response_format=fmt) as resp:
        parts = [part async for part in resp.iter_bytes()]
    await client.close()
    check_audio(fmt, b"".join(parts), gw.worker)


def test_openai_client_sees_openai_errors(gw):
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.audio.speech.create(model="tts-1", voice="alloy", input="x")
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=API_KEY, max_retries=0)
    with pytest.raises(openai.BadRequestError) as exc:
        client.audio.speech.create(model="tts-1", voice="alloy", input="x", speed=5.0)
    assert exc.value.body["param"] == "speed"


@pytest.mark.parametrize("fmt", ["opus", "flac", "aac"])
def test_other_formats_decode_to_the_right_duration(gw, client, fmt):
    r = client.post(gw.url + "/v1/audio/speech", headers=auth(),
                    json={"model": "tts-1", "input": "x", "voice": "alloy",
                          "response_format": fmt})
    assert r.status_code == 200
    assert r.headers["content-type"] == {"opus": "audio/ogg", "flac": "audio/flac",
                                         "aac": "audio/aac"}[fmt]
    n, rate = decoded_samples(r.content)
    # AAC adds a priming frame and pads the last one: up to 2 x 1024 samples more.
    assert n / rate == pytest.approx(EXPECTED_SAMPLES / p.SAMPLE_RATE, abs=2048 / 24000 + 0.001)


def test_sse_stream_format(gw, client):
    r = client.post(gw.url + "/v1/audio/speech", headers=auth(),
                    json={"model": "tts-1", "input": "x", "voice": "alloy",
                          "response_format": "pcm", "stream_format": "sse"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(block[len("data: "):]) for block in r.text.split("\n\n") if block]
    assert [e["type"] for e in events[:-1]] == ["speech.audio.delta"] * (len(events) - 1)
    assert events[-1]["type"] == "speech.audio.done"
    assert events[-1]["stats"]["samples"] == EXPECTED_SAMPLES
    pcm = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert pcm == gw.worker.expected_pcm(CHUNKS)


def test_sse_error_event_after_audio(gw, client):
    gw.worker.script(Behaviour.error(p.ErrorCode.ENGINE_ERROR, after=2, message="boom"))
    r = client.post(gw.url + "/v1/audio/speech", headers=auth(),
                    json={"model": "tts-1", "input": "x", "voice": "alloy",
                          "stream_format": "sse", "response_format": "pcm"})
    events = [json.loads(block[len("data: "):]) for block in r.text.split("\n\n") if block]
    assert [e["type"] for e in events] == ["speech.audio.delta"] * 2 + ["error"]
    assert events[-1]["error"]["code"] == p.ErrorCode.ENGINE_ERROR


def test_error_before_audio_is_an_http_status(gw, client):
    gw.worker.script(Behaviour.error(p.ErrorCode.DEADLINE_EXCEEDED, after=0))
    r = client.post(gw.url + "/v1/audio/speech", headers=auth(),
                    json={"model": "tts-1", "input": "x", "voice": "alloy"})
    assert r.status_code == 504 and r.json()["error"]["code"] == p.ErrorCode.DEADLINE_EXCEEDED


def test_failure_after_audio_cuts_the_transfer(gw, client):
    # Raw audio has no terminal frame: the client must see a broken transfer, not a short file.
    gw.worker.script(Behaviour.drop(after=2))
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(gw.url + "/v1/audio/speech", headers=auth(),
                    json={"model": "tts-1", "input": "x", "voice": "alloy",
                          "response_format": "pcm"})
    # and the gateway is fine afterwards
    r = client.post(gw.url + "/v1/audio/speech", headers=auth(),
                    json={"model": "tts-1", "input": "x", "voice": "alloy",
                          "response_format": "pcm"})
    assert r.content == gw.worker.expected_pcm(CHUNKS)


def test_a_cut_transfer_is_not_an_error_in_the_gateways_log(gw, client, caplog):
    """A worker failing after audio is an ordinary event: the gateway cuts the transfer on
    purpose, so uvicorn's "returned without completing response" is no ERROR line of its own
    (as shipped, uvicorn's records go to the root handler; here its logger keeps them)."""
    uvicorn_log = logging.getLogger("uvicorn")
    uvicorn_log.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING):
            gw.worker.script(Behaviour.drop(after=2))
            with pytest.raises(httpx.RemoteProtocolError):
                client.post(gw.url + "/v1/audio/speech", headers=auth(),
                            json={"model": "tts-1", "input": "x", "voice": "alloy",
                                  "response_format": "pcm"})
            assert client.get(gw.url + "/healthz").status_code == 200  # the request has ended
    finally:
        uvicorn_log.removeHandler(caplog.handler)
    bad = [(r.name, r.getMessage()) for r in caplog.records if r.levelno >= logging.ERROR]
    assert not bad, bad
