"""The real `openai` client (pinned in the clients' venv) on OpenAI's full speech API."""

from __future__ import annotations

import pytest

from tests.clients.conftest import assert_clean_log
from tests.clients.speech import decode, speech_calls

CHUNKS, CHUNK_SAMPLES = 10, 2400  # 1.0 s at 24 kHz
SECONDS = CHUNKS * CHUNK_SAMPLES / 24_000
FORMATS = ["mp3", "opus", "aac", "flac", "wav", "pcm"]
CONTENT_TYPES = {"mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac",
                 "flac": "audio/flac", "wav": "audio/wav", "pcm": "audio/pcm"}


@pytest.fixture
def stack(fake_stack):
    return fake_stack(chunks=CHUNKS, chunk_samples=CHUNK_SAMPLES, chunk_delay_ms=2)


def seconds_of(result: dict, fmt: str) -> float:
    samples, rate = decode(result["body"], fmt)
    return samples / rate


def test_every_format_in_both_stream_modes(stack, tmp_path):
    calls = [{"mode": mode, "kwargs": {"model": "gpt-4o-mini-tts", "voice": "alloy",
                                       "input": "Hello there.", "response_format": fmt,
                                       "stream_format": "sse" if mode == "sse" else "audio"}}
             for fmt in FORMATS for mode in ("stream", "sse")]
    results = speech_calls("openai", stack.url + "/v1", stack.key, calls, tmp_path)
    for call, r in zip(calls, results):
        fmt, mode = call["kwargs"]["response_format"], call["mode"]
        assert r.get("status") == 200, (fmt, mode, r)
        if mode == "sse":
            assert r["headers"]["content-type"].startswith("text/event-stream")
            done = r["events"][-1]
            assert done["type"] == "speech.audio.done", r["events"][-3:]
            assert set(done["usage"]) == {"input_tokens", "output_tokens", "total_tokens"}
            assert done["usage"]["total_tokens"] == (done["usage"]["input_tokens"]
                                                     + done["usage"]["output_tokens"])
        else:
            assert r["headers"]["content-type"] == CONTENT_TYPES[fmt]
        assert seconds_of(r, fmt) == pytest.approx(SECONDS, abs=0.1), (fmt, mode)
    assert_clean_log(stack)


def test_speed_stretches_duration_by_one_over_speed(stack, tmp_path):
    calls = [{"mode": "create", "kwargs": {"model": "tts-1", "voice": "alloy", "input": "Hi.",
                                           "response_format": "wav", "speed": speed}}
             for speed in (1.0, 0.5, 1.5)]
    base, slow, fast = speech_calls("openai", stack.url + "/v1", stack.key, calls, tmp_path)
    for r in (base, slow, fast):
        assert r.get("status") == 200, r
    d1 = seconds_of(base, "wav")
    assert d1 == pytest.approx(SECONDS, abs=0.01)
    assert seconds_of(slow, "wav") == pytest.approx(d1 / 0.5, rel=0.05)
    assert seconds_of(fast, "wav") == pytest.approx(d1 / 1.5, rel=0.05)


def test_instructions_voice_object_and_model(stack, tmp_path):
    calls = [
        {"mode": "stream", "kwargs": {"model": "gpt-4o-mini-tts", "voice": "alloy",
                                      "input": "Hello.", "response_format": "pcm",
                                      "instructions": "Sound tired and a little sad."}},
        {"mode": "stream", "kwargs": {"model": "gpt-4o-mini-tts", "voice": "alloy",
                                      "input": "Hello.", "response_format": "pcm",
                                      "instructions": "Speak like a pirate."}},
        {"mode": "stream", "kwargs": {"model": "tts-1", "voice": {"id": "leah"},
                                      "input": "Hello.", "response_format": "pcm"}},
        {"mode": "create", "kwargs": {"model": "canopylabs/orpheus-arabic-saudi",
                                      "voice": "alloy", "input": "Hello."}},
    ]
    tired, pirate, voice_obj, other_model = speech_calls(
        "openai", stack.url + "/v1", stack.key, calls, tmp_path)
    bodies = [r.body for r in stack.worker.stream_requests]
    assert tired["status"] == 200 and tired["headers"]["x-orpheus-instructions"] == \
        "applied: <sigh>"
    assert bodies[0]["text"] == "<sigh> Hello."
    assert pirate["status"] == 200 and pirate["headers"]["x-orpheus-instructions"] == "ignored"
    assert bodies[1]["text"] == "Hello."
    assert voice_obj["status"] == 200 and bodies[2]["voice"] == "leah"
    assert other_model["error"] == "BadRequestError" and other_model["status"] == 400
    assert "canopylabs/orpheus-arabic-saudi" in other_model["message"]
    assert "tts-1" in other_model["message"]  # the served names are listed
    assert len(bodies) == 3
