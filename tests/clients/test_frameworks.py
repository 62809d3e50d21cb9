"""Voice-agent frameworks' OpenAI TTS services, pinned, as their apps configure them."""

from __future__ import annotations

import json

import pytest

from tests.clients.conftest import assert_clean_log
from tests.clients.venvs import run_driver


@pytest.fixture
def stack(fake_stack):
    return fake_stack(chunks=10, chunk_samples=2400, chunk_delay_ms=2)  # 1 s


def drive(driver: str, gw, options: dict) -> dict:
    done = run_driver("frameworks", driver, gw.url + "/v1", gw.key, json.dumps(options),
                      timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_pipecat_openai_tts_service_with_speed(stack):
    seen = drive("pipecat_tts.py", stack, {"speed": 1.25, "voice": "alloy",
                                           "instructions": "Speak in a cheerful tone."})
    assert seen["errors"] == [] and seen["audio_frames"] > 0, seen
    assert seen["sample_rates"] == [24000]
    assert seen["pcm_bytes"] / 2 / 24000 == pytest.approx(1.0 / 1.25, rel=0.05)
    body = stack.worker.stream_requests[-1].body
    assert body["voice"] == "tara" and body["text"].startswith("<chuckle> ")
    assert_clean_log(stack)


def test_livekit_openai_tts_with_speed(stack):
    result = drive("livekit_tts.py", stack, {"speed": 1.25})
    assert result["error"] is None and result["audio_frames"] > 0, result
    assert result["sample_rates"] == [24000]
    # livekit's defaults: gpt-4o-mini-tts, voice "ash", mp3 over SSE
    assert result["samples"] / 24000 == pytest.approx(1.0 / 1.25, abs=0.1)  # mp3 padding
    assert stack.worker.stream_requests[-1].body["voice"] == "leo"
    assert_clean_log(stack)
