"""Canopy Labs' `orpheus-tts` 0.1.6 `OrpheusClient`, unchanged, against the gateway's
`/v1/canopy/ws` (its own venv: it imports as `orpheus_tts`, like this project).

Always given `voice_endpoint_map` or `ws_url`: it never reaches its default config service.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from orpheus_tts.protocol.canopy import CANOPY_SAMPLE_RATE, CANOPY_WS_PATH
from tests.clients.conftest import assert_clean_log
from tests.clients.venvs import run_driver

CHUNKS, CHUNK_SAMPLES = 4, 1200
PCM_48K = CHUNKS * CHUNK_SAMPLES * 2 * CANOPY_SAMPLE_RATE // 24_000  # bytes, after resampling


def canopy(scenario: str, gw, key: str | None = None, voice: str = "tara") -> dict:
    done = run_driver("canopy", "canopy_client.py", scenario, gw.ws_url + CANOPY_WS_PATH,
                      key or gw.key, voice, timeout=90)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def stack(fake_stack):
    return fake_stack(chunks=CHUNKS, chunk_samples=CHUNK_SAMPLES, chunk_delay_ms=5)


def assert_pcm(n: int) -> None:
    assert abs(n - PCM_48K) <= 64, n  # 48 kHz s16le of the worker's 24 kHz audio


def test_legacy_mode_fresh_socket_and_pool(stack):
    result = canopy("legacy", stack)
    assert result["ok"], result
    for n in result["pcm_bytes"]:
        assert_pcm(n)
    result = canopy("legacy_pool", stack)
    assert result["ok"], result
    assert len(result["pcm_bytes"]) == 3
    for n in result["pcm_bytes"]:
        assert_pcm(n)
    body = stack.worker.stream_requests[-1].body
    assert body["voice"] == "tara" and body["max_tokens"] == 3000
    assert body["temperature"] == 1.0 and body["repetition_penalty"] == 1.1
    # The client pings the unauthenticated /health next to the socket.
    assert httpx.get(stack.url + "/health").status_code == 200
    assert_clean_log(stack)


def test_eight_concurrent_requests_on_one_multiplexed_socket(stack):
    result = canopy("multiplexed8", stack)
    assert result["ok"], result
    assert len(result["pcm_bytes"]) == 8
    for n in result["pcm_bytes"]:
        assert_pcm(n)
    assert len(stack.worker.stream_requests) == 8
    texts = sorted(r.body["text"] for r in stack.worker.stream_requests)
    assert texts == sorted(f"Hello from Canopy's client. Number {i}." for i in range(8))
    assert_clean_log(stack)


@pytest.mark.parametrize("scenario", ["auth_failure", "auth_failure_multiplexed"])
def test_wrong_key_raises_authentication_error_at_once(stack, scenario):
    result = canopy(scenario, stack, key="not-a-key")
    assert not result["ok"] and result["is_auth_error"], result
    assert result["elapsed_s"] < 5
    assert stack.worker.stream_requests == []


def test_refused_request_ends_with_its_error_not_a_hang(stack):
    result = canopy("bad_voice", stack, voice="nobody")
    assert not result["ok"] and result["error"] == "StreamingError", result
    assert "unknown_voice" in result["message"] and result["elapsed_s"] < 5
    assert not result["is_auth_error"]


def test_disconnect_mid_stream_aborts_the_engine_request(fake_stack):
    gw = fake_stack(chunks=200, chunk_samples=1200, chunk_delay_ms=50)  # 10 s of streaming
    srv = gw.worker
    t0 = time.monotonic()
    result = canopy("disconnect", gw)
    assert result["ok"] and result["first_audio"] > 0, result
    assert srv.wait_until(lambda: srv.cancelled_streams == 1, timeout=10), srv.stats()
    assert srv.completed_streams == 0 and time.monotonic() - t0 < 10
    deadline = time.monotonic() + 5
    while gw.system()["gateway_inflight"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gw.system()["gateway_inflight"] == 0
    assert_clean_log(gw)


@pytest.mark.engine
def test_disconnect_mid_stream_aborts_the_real_engine_request(worker_pair, gateway_proc):
    """Real workers (vLLM on the stand-in model): the client asks for 3000 tokens (tens of
    seconds of audio on CPU); closing it after the first audio frees the engine at once."""
    urls = [w.url for w in worker_pair]
    gw = gateway_proc(urls)
    result = canopy("disconnect", gw)
    assert result["ok"] and result["first_audio"] > 0, result
    closed_at = time.monotonic()
    while True:
        snaps = [httpx.get(u + "/v1/system", timeout=10).json() for u in urls]
        if all(s["inflight"] == 0 and not s.get("engine_requests") for s in snaps):
            break
        assert time.monotonic() - closed_at < 15, snaps
        time.sleep(0.2)
    assert_clean_log(gw)
