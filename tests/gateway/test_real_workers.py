"""The gateway in front of real worker processes on the stand-in model (vLLM CPU + SNAC).

Kept small: every generated second costs several seconds of CPU here. The fake-worker suites
cover the fault matrix; these prove the same paths against the real thing.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import random

import av
import httpx
import openai
import pytest
from websockets.asyncio.client import connect

from orpheus_gateway.config import WS_MAX_QUEUED
from orpheus_tts import protocol as p
from tests.gateway.conftest import API_KEY, auth
from tests.gateway.test_ws import Session
from tests.support.worker_proc import start_worker

pytestmark = pytest.mark.engine

SHORT = {"max_tokens": 42}  # about six SNAC frames: a fraction of a second of audio


def worker_system(url: str) -> dict:
    return httpx.get(url + p.SYSTEM_PATH, timeout=10).json()


async def wait_workers_idle(urls: list[str], timeout: float = 60.0) -> dict[str, dict]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        snaps = {u: await asyncio.to_thread(worker_system, u) for u in urls}
        if all(s["inflight"] == 0 and not s.get("engine_requests") for s in snaps.values()):
            return snaps
        if asyncio.get_running_loop().time() > deadline:
            return snaps
        await asyncio.sleep(0.2)


@pytest.fixture
def real_gw(worker_pair, gateway_server):
    gw = gateway_server([w.url for w in worker_pair])
    gw.wait_polled(timeout=15)
    return gw


def test_v1_stream_through_real_workers(real_gw, client):
    r = client.post(real_gw.url + p.STREAM_PATH, headers=auth(), timeout=120,
                    json={"text": "Hello from the gateway.", "voice": "alloy", **SHORT})
    assert r.status_code == 200 and r.headers[p.HEADER_WORKER_ID] in ("w-a", "w-b")
    frames = [p.decode_frame(line) for line in r.text.splitlines()]
    assert isinstance(frames[-1], p.EosFrame)
    chunks = [f for f in frames if isinstance(f, p.ChunkFrame)]
    assert chunks and sum(len(c.pcm()) for c in chunks) == frames[-1].samples * 2
    assert any(isinstance(f, p.MetricsFrame) for f in frames)


def test_openai_client_against_real_workers(real_gw):
    sync = openai.OpenAI(base_url=real_gw.url + "/v1", api_key=API_KEY, max_retries=0,
                         timeout=120)
    for fmt in ("pcm", "wav", "mp3"):
        with sync.audio.speech.with_streaming_response.create(
                model="tts-1", voice="alloy", input="Hi.", response_format=fmt) as resp:
            data = b"".join(resp.iter_bytes())
        if fmt == "pcm":
            assert data and len(data) % 2 == 0
            continue
        with av.open(io.BytesIO(data)) as container:
            samples = sum(f.samples for f in container.decode(audio=0))
        if fmt == "wav":
            assert samples == (len(data) - 44) // 2 > 0
        else:
            assert samples > 0

    async def run_async() -> list[bytes]:
        client = openai.AsyncOpenAI(base_url=real_gw.url + "/v1", api_key=API_KEY,
                                    max_retries=0, timeout=120)

        async def one(fmt: str) -> bytes:
            async with client.audio.speech.with_streaming_response.create(
                    model="tts-1", voice="nova", input="Hi.", response_format=fmt) as resp:
                return b"".join([part async for part in resp.iter_bytes()])

        try:
            return await asyncio.gather(one("pcm"), one("wav"))
        finally:
            await client.close()

    pcm, wav = asyncio.run(run_async())
    assert pcm and wav[:4] == b"RIFF" and len(wav) > 44


async def test_ws_many_utterances_with_random_cancels_leave_workers_idle(real_gw, worker_pair):
    rng = random.Random(4)
    # One speaking and as many waiting as a session may hold: every one is admitted.
    ids = [f"r-{i}" for i in range(1 + WS_MAX_QUEUED)]
    async with connect(real_gw.ws_url + p.WS_PATH, additional_headers=auth(),
                       open_timeout=10) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        s = Session(ws)

        async def cancel_later(uid: str, delay: float) -> None:
            await asyncio.sleep(delay)
            await s.cancel(uid)

        tasks = []
        for uid in ids:
            await s.speak(uid, text="Hi.", params=SHORT)
            if rng.random() < 0.6:
                tasks.append(asyncio.create_task(cancel_later(uid, rng.uniform(0, 3.0))))
        await s.pump(lambda: all(s.terminals[u] for u in ids), timeout=240)
        await asyncio.gather(*tasks)
    assert not s.violations
    assert all(len(s.terminals[u]) == 1 for u in ids), dict(s.terminals)
    kinds = [s.terminals[u][0]["type"] for u in ids]
    errors = [s.terminals[u][0] for u in ids if s.terminals[u][0]["type"] == "error"]
    assert "done" in kinds and "cancelled" in kinds and not errors, errors
    snaps = await wait_workers_idle([w.url for w in worker_pair])
    assert all(s["inflight"] == 0 and not s.get("engine_requests") for s in snaps.values()), snaps


@pytest.mark.timeout(900)  # the third worker's boot alone may take minutes on a busy machine
def test_killed_worker_mid_stream_then_next_request_goes_to_the_live_one(
        tiny_model, worker_pair, gateway_server, client):
    # A third worker, since killing one of the shared pair would break later suites. Its boot
    # is slow when the machine is busy: allow for that.
    victim = start_worker(tiny_model, extra_args=("--worker-id", "w-victim"), timeout=600)
    try:
        live = worker_pair[0]
        gw = gateway_server([victim.url, live.url])
        gw.wait_polled(timeout=15)
        frames: list[dict] = []
        for _ in range(10):  # the choice between equals is random: until the victim gets one
            with client.stream("POST", gw.url + p.STREAM_PATH, headers=auth(), timeout=120,
                               json={"text": "A long sentence that takes a while. " * 4}) as r:
                if r.headers.get(p.HEADER_WORKER_ID) != "w-victim":
                    continue  # leaving the block cancels that stream
                for line in r.iter_lines():
                    frames.append(json.loads(line))
                    if frames[-1]["type"] == "chunk" and not victim.proc.poll():
                        victim.kill()  # SIGKILL, like a crashed pod
                break
        assert frames, "the victim never got a stream"
        kinds = [f["type"] for f in frames]
        assert sum(k in p.TERMINAL_TYPES for k in kinds) == 1 and kinds[-1] == "error"
        assert frames[-1]["code"] == p.ErrorCode.UPSTREAM_LOST
        r = client.post(gw.url + p.STREAM_PATH, headers=auth(), timeout=120,
                        json={"text": "And now?", **SHORT})
        assert r.status_code == 200 and r.headers[p.HEADER_WORKER_ID] == "w-a"
        assert json.loads(r.text.splitlines()[-1])["type"] == "eos"
    finally:
        victim.kill()


def test_openai_sse_usage_and_speed_on_real_workers(real_gw, client):
    """`usage` is the engine's token counts; `speed` stretches the audio the engine made by
    1/speed (compared within one response: `stats.audio_s` is the unstretched length)."""
    r = client.post(real_gw.url + p.SPEECH_PATH, headers=auth(), timeout=120,
                    json={"model": "tts-1", "voice": "alloy", "input": "Hi there.",
                          "response_format": "pcm", "stream_format": "sse", "speed": 1.5})
    assert r.status_code == 200, r.text
    events = [json.loads(line[len("data: "):]) for line in r.text.splitlines()
              if line.startswith("data: ")]
    done = events[-1]
    assert done["type"] == "speech.audio.done", done
    pcm = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    usage, stats = done["usage"], done["stats"]
    assert usage["input_tokens"] == stats["prompt_tokens"] > 0
    assert usage["output_tokens"] == stats["tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert len(pcm) / 2 / p.SAMPLE_RATE == pytest.approx(stats["audio_s"] / 1.5, rel=0.05)
