"""A real worker process (vLLM on CPU + SNAC) on the stand-in checkpoint, over real HTTP.

One worker serves the whole module; the drain test stops it and therefore runs last.
"""

from __future__ import annotations

import asyncio
import signal
import time

import httpx
import pytest

from orpheus_tts import protocol as P
from tests.support.worker_proc import start_worker, wait_draining

pytestmark = [pytest.mark.engine, pytest.mark.timeout(900)]

CAPACITY, QUEUE = 2, 1


@pytest.fixture(scope="module")
def worker(tiny_model):
    w = start_worker(tiny_model, extra_args=(
        "--worker-id", "w-test", "--max-streams", str(CAPACITY), "--max-queue", str(QUEUE),
        "--snac-deterministic", "--max-text-chars", "2000", "--segment-chars", "60",
        "--drain-seconds", "20"))
    yield w
    w.stop(timeout=30)


def frames_of(lines: list[bytes]) -> list[P.Frame]:
    return [f for f in (P.decode_frame(line) for line in lines) if f is not None]


def system(worker) -> dict:
    return httpx.get(worker.url + P.SYSTEM_PATH, timeout=10).json()


def wait_idle(worker, timeout=60.0) -> dict:
    """Poll /v1/system until no stream, engine request or decode work is left (bounded)."""
    deadline = time.monotonic() + timeout
    snap = system(worker)
    while time.monotonic() < deadline:
        snap = system(worker)
        if not (snap["inflight"] or snap["queue_depth"] or snap["engine_requests"]
                or snap["decode_streams"]):
            return snap
        time.sleep(0.1)
    return snap


def check_stream_shape(frames: list[P.Frame]) -> None:
    """Chunks numbered from 0, at least one metrics frame, exactly one terminal frame, last."""
    terminals = [f for f in frames if f.type in P.TERMINAL_TYPES]
    assert len(terminals) == 1 and frames[-1] is terminals[0]
    assert any(f.type == "metrics" for f in frames)
    chunks = [f for f in frames if f.type == "chunk"]
    assert [c.seq for c in chunks] == list(range(len(chunks)))


def test_pcm_is_2048_samples_per_complete_frame_then_one_eos(worker):
    with httpx.stream("POST", worker.url + P.STREAM_PATH, timeout=120,
                      json={"text": "Hello there.", "voice": "tara", "max_tokens": 75,
                            "seed": 7}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith(P.NDJSON)
        assert r.headers[P.HEADER_WORKER_ID] == "w-test"
        assert P.HEADER_QUEUE_DEPTH in r.headers and P.HEADER_INFLIGHT in r.headers
        frames = frames_of(list(r.iter_lines()))
    check_stream_shape(frames)
    chunks = [f for f in frames if f.type == "chunk"]
    eos = frames[-1]
    assert eos.type == "eos"
    pcm = b"".join(c.pcm() for c in chunks)
    assert all(len(c.pcm()) == 2 * c.samples for c in chunks)
    # 75 audio tokens = 10 complete frames + 5 left over (the model only emits audio tokens)
    assert eos.frames == 10 and eos.tokens == 75
    assert len(pcm) // P.SAMPLE_WIDTH == 2048 * 10 == eos.samples
    assert eos.chunks == len(chunks) and eos.audio_s == pytest.approx(20480 / 24000)
    assert wait_idle(worker)["engine_requests"] == 0


def test_default_budget_and_emotion_tags_pass_through(worker):
    r = httpx.post(worker.url + P.STREAM_PATH, timeout=120,
                   json={"text": "Wow <laugh> that is funny.", "voice": "leo", "seed": 1})
    frames = frames_of(r.content.splitlines())
    check_stream_shape(frames)
    eos = frames[-1]
    assert eos.type == "eos" and eos.samples == 2048 * eos.frames > 0


def test_long_text_is_one_utterance_from_ordered_segments(worker):
    text = "One short sentence. " * 6 + "And the last one."
    r = httpx.post(worker.url + P.STREAM_PATH, timeout=300,
                   json={"text": text, "voice": "mia", "max_tokens": 14, "seed": 3})
    frames = frames_of(r.content.splitlines())
    check_stream_shape(frames)
    eos = frames[-1]
    assert eos.type == "eos" and eos.segments >= 2
    assert eos.frames == 2 * eos.segments  # 14 tokens = 2 frames per segment
    assert eos.samples == 2048 * eos.frames


@pytest.mark.parametrize("body,status,code,param", [
    ({"text": "hi", "voice": "bob"}, 400, "unknown_voice", "voice"),
    ({"text": "hi", "speed": 2}, 400, "unknown_parameter", "speed"),
    ({"text": "   "}, 400, "invalid_request", "text"),
    ({"text": "x" * 2001}, 400, "text_too_long", "text"),
    ({"text": "hi", "repetition_penalty": 1.0}, 400, "invalid_request", "repetition_penalty"),
])
def test_bad_requests_get_openai_shaped_4xx(worker, body, status, code, param):
    r = httpx.post(worker.url + P.STREAM_PATH, json=body, timeout=30,
                   headers={P.HEADER_REQUEST_ID: "req-1"})
    assert r.status_code == status
    err = r.json()["error"]
    assert err["code"] == code and err["param"] == param
    assert r.headers[P.HEADER_REQUEST_ID] == "req-1"
    if code == "unknown_voice":
        assert "tara" in err["message"] and "zoe" in err["message"]


def test_invalid_json_is_400(worker):
    r = httpx.post(worker.url + P.STREAM_PATH, content=b"{nope", timeout=30)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


async def test_client_disconnect_aborts_the_engine_request(worker):
    async with httpx.AsyncClient(timeout=120) as client:
        async with client.stream("POST", worker.url + P.STREAM_PATH,
                                 json={"text": "A long one.", "max_tokens": 1500}) as r:
            lines = r.aiter_lines()
            first = P.decode_frame(await anext(lines))
            assert first.type == "chunk"
            during = (await client.get(worker.url + P.SYSTEM_PATH)).json()
            assert during["engine_requests"] == 1 and during["inflight"] == 1
        # leaving the block closes the connection mid-stream
    snap = await asyncio.to_thread(wait_idle, worker)
    assert snap["engine_requests"] == 0
    assert snap["inflight"] == 0 and snap["decode_streams"] == 0


def test_deadline_ends_with_an_error_frame_and_aborts(worker):
    r = httpx.post(worker.url + P.STREAM_PATH, timeout=120,
                   json={"text": "Slow.", "max_tokens": 3000, "timeout_s": 1.5})
    frames = frames_of(r.content.splitlines())
    check_stream_shape(frames)
    last = frames[-1]
    assert last.type == "error" and last.code == P.ErrorCode.DEADLINE_EXCEEDED
    assert last.retryable is False
    assert wait_idle(worker)["engine_requests"] == 0


async def test_admission_queues_then_refuses_with_503_overloaded(worker):
    body = {"text": "Hold the line.", "max_tokens": 3000, "timeout_s": 120}
    async with httpx.AsyncClient(timeout=120) as client:
        streams = []
        try:
            for _ in range(CAPACITY + QUEUE):
                ctx = client.stream("POST", worker.url + P.STREAM_PATH, json=body)
                r = await ctx.__aenter__()
                streams.append(ctx)
                assert r.status_code == 200
            snap = (await client.get(worker.url + P.SYSTEM_PATH)).json()
            assert snap["inflight"] == CAPACITY and snap["queue_depth"] == QUEUE
            refused = await client.post(worker.url + P.STREAM_PATH, json=body)
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == P.ErrorCode.OVERLOADED
            assert int(refused.headers[P.HEADER_RETRY_AFTER]) >= 1
        finally:
            for ctx in streams:
                await ctx.__aexit__(None, None, None)
    snap = await asyncio.to_thread(wait_idle, worker)
    assert snap["engine_requests"] == 0 and snap["inflight"] == 0


def test_system_voices_metrics(worker):
    snap = P.SystemSnapshot.model_validate(system(worker))
    assert snap.role == "worker" and snap.ready and snap.capacity == CAPACITY
    assert snap.voices == ["tara", "leah", "jess", "leo", "dan", "mia", "zac", "zoe"]
    assert snap.ttfa_p50_ms is not None and snap.ttfa_p95_ms >= snap.ttfa_p50_ms
    assert snap.model.endswith("llm")
    voices = httpx.get(worker.url + P.VOICES_PATH, timeout=10).json()
    assert voices["voices"] == snap.voices and voices["aliases"]["alloy"] == "tara"
    text = httpx.get(worker.url + "/metrics", timeout=10).text
    for name in ("orpheus_worker_ttfa_seconds_bucket", "orpheus_worker_queue_wait_seconds_count",
                 "orpheus_worker_inflight", "orpheus_worker_queue_depth",
                 "orpheus_worker_tokens_generated_total", "orpheus_worker_audio_seconds_total",
                 "orpheus_worker_rtf_bucket", "orpheus_worker_snac_batch_size_bucket",
                 'orpheus_worker_errors_total{code="deadline_exceeded"}',
                 'orpheus_worker_errors_total{code="unknown_voice"}'):
        assert name in text, name
    assert httpx.get(worker.url + "/healthz", timeout=10).status_code == 200


async def test_sigterm_drains_inflight_then_exits_zero(worker):
    """Runs last: stops the module's worker. A short stream finishes during the drain; a long
    one outlives `--drain-seconds` and gets an explicit `draining` error frame."""
    async with httpx.AsyncClient(timeout=180) as client:
        async with client.stream("POST", worker.url + P.STREAM_PATH,
                                 json={"text": "Finish me.", "max_tokens": 56}) as short, \
                client.stream("POST", worker.url + P.STREAM_PATH,
                              json={"text": "Too long.", "max_tokens": 1900}) as long_:
            short_lines, long_lines = short.aiter_lines(), long_.aiter_lines()
            first = P.decode_frame(await anext(short_lines))
            assert first.type == "chunk"
            worker.proc.send_signal(signal.SIGTERM)
            await wait_draining(client, worker.url)
            refused = await client.post(worker.url + P.STREAM_PATH, json={"text": "new"})
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == P.ErrorCode.DRAINING
            assert P.HEADER_RETRY_AFTER in refused.headers
            rest = [line async for line in short_lines]
            long_frames = frames_of([line.encode() async for line in long_lines])
    frames = [first, *frames_of([line.encode() for line in rest])]
    check_stream_shape(frames)
    assert frames[-1].type == "eos" and frames[-1].frames == 8
    check_stream_shape(long_frames)
    assert long_frames[-1].type == "error" and long_frames[-1].code == P.ErrorCode.DRAINING
    code = await asyncio.to_thread(worker.proc.wait, 90)
    assert code == 0
    assert "orpheus-worker stopped" in worker.log()
