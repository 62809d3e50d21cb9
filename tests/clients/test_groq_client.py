"""The real `groq` client (pinned), unchanged but for base URL and key.

The cluster here serves a model named `canopylabs/orpheus-arabic-saudi` whose workers report
Groq's Arabic voices (configuration, not a second pool).
"""

from __future__ import annotations

import json
import wave

import pytest

from tests.clients.conftest import assert_clean_log
from tests.clients.speech import decode, speech_calls
from tests.clients.venvs import run_driver

ARABIC = "canopylabs/orpheus-arabic-saudi"
ARABIC_VOICES = ("abdullah", "fahad", "sultan", "lulwa", "noura", "aisha")
CHUNKS, CHUNK_SAMPLES = 10, 2400  # 1.0 s at 24 kHz
SECONDS = CHUNKS * CHUNK_SAMPLES / 24_000

# The production post-mortem's snippet, verbatim (plus the `import os` it leaves out): base URL
# and key come from the environment, GROQ_BASE_URL and GROQ_API_KEY, which the client reads.
POST_MORTEM = '''import os
from groq import Groq
client = Groq(api_key=os.environ["GROQ_API_KEY"])
response = client.audio.speech.create(
model="canopylabs/orpheus-arabic-saudi",
voice="noura",
input="مرحبا بكم في تطبيقنا",
response_format="wav"
)
# Save or stream the audio
with open("output.wav", "wb") as f:
    f.write(response.content)
'''


@pytest.fixture
def arabic(fake_stack):
    return fake_stack("--model-name", ARABIC, chunks=CHUNKS, chunk_samples=CHUNK_SAMPLES,
                      voices=ARABIC_VOICES)


def run_snippet(gw, tmp_path, source: str):
    script = tmp_path / "snippet.py"
    script.write_text(source, encoding="utf-8")
    return run_driver("frameworks", "run_script.py", str(script), str(tmp_path),
                      env={"GROQ_API_KEY": gw.key, "GROQ_BASE_URL": gw.url})


def test_post_mortem_snippet_verbatim(arabic, tmp_path):
    # Verbatim, the request succeeds and then the snippet's last line fails in the client:
    # groq's `speech.create` returns a `BinaryAPIResponse`, which has no `.content` (checked
    # in groq 0.37.1, 1.0.0 and 1.7.0) -- against Groq itself too.
    done = run_snippet(arabic, tmp_path, POST_MORTEM)
    assert done.returncode != 0
    assert "'BinaryAPIResponse' object has no attribute 'content'" in done.stderr, done.stderr
    assert arabic.worker.completed_streams == 1
    # With the client's own accessor, `response.read()`, it writes the WAV.
    done = run_snippet(arabic, tmp_path, POST_MORTEM.replace("response.content",
                                                             "response.read()"))
    assert done.returncode == 0, done.stderr
    with wave.open(str(tmp_path / "output.wav")) as w:
        assert w.getframerate() == 24_000 and w.getnchannels() == 1
        assert w.readframes(10**7) == arabic.worker.expected_pcm(CHUNKS)
    body = arabic.worker.stream_requests[-1].body
    assert body["voice"] == "noura" and body["text"] == "مرحبا بكم في تطبيقنا"
    assert_clean_log(arabic)


def test_sample_rates_ogg_and_mulaw(arabic, tmp_path):
    calls = [{"kwargs": {"model": ARABIC, "voice": voice, "input": "مرحبا", **kw}}
             for voice, kw in [("fahad", {"response_format": "wav", "sample_rate": 48000}),
                               ("lulwa", {"response_format": "wav", "sample_rate": 8000}),
                               ("sultan", {"response_format": "ogg"}),
                               ("aisha", {"response_format": "mulaw", "sample_rate": 8000}),
                               ("abdullah", {"response_format": "flac", "sample_rate": 16000}),
                               ("noura", {"response_format": "mp3", "sample_rate": 44100})]]
    results = speech_calls("groq", arabic.url, arabic.key, calls, tmp_path)
    expected = [("wav", 48000), ("wav", 8000), ("ogg", 48000), ("mulaw", 8000),
                ("flac", 16000), ("mp3", 44100)]
    for (fmt, rate), r in zip(expected, results):
        assert r.get("status") == 200, (fmt, rate, r)
        samples, got_rate = decode(r["body"], fmt, rate)
        assert got_rate == rate, (fmt, got_rate)
        assert samples / rate == pytest.approx(SECONDS, abs=0.08), (fmt, rate)
    assert results[2]["headers"]["content-type"] == "audio/ogg"
    assert results[3]["headers"]["content-type"] == "audio/basic"
    assert len(results[3]["body"]) == pytest.approx(8000 * SECONDS, abs=80)  # 1 byte a sample
    assert [r.body["voice"] for r in arabic.worker.stream_requests] == [
        "fahad", "lulwa", "sultan", "aisha", "abdullah", "noura"]


def test_model_not_served_is_a_400_listing_the_served_ones(arabic, tmp_path):
    calls = [{"kwargs": {"model": "canopylabs/orpheus-v1-english", "voice": "autumn",
                         "input": "Hello", "response_format": "wav"}}]
    (r,) = speech_calls("groq", arabic.url, arabic.key, calls, tmp_path)
    assert r["error"] == "BadRequestError" and r["status"] == 400, r
    assert ARABIC in r["message"] and "orpheus-v1-english" in r["message"]
    assert arabic.worker.stream_requests == []


def test_english_groq_voices_resolve_and_cluster_aliases_override(fake_stack, tmp_path):
    aliases = tmp_path / "aliases.json"
    aliases.write_text(json.dumps({"troy": "leah"}))
    gw = fake_stack("--model-name", "canopylabs/orpheus-v1-english",
                    "--voice-aliases", str(aliases), chunks=2, chunk_samples=480)
    srv = gw.worker
    calls = [{"kwargs": {"model": "canopylabs/orpheus-v1-english", "voice": v, "input": "Hi",
                         "response_format": "wav"}} for v in ("autumn", "daniel", "troy")]
    results = speech_calls("groq", gw.url, gw.key, calls, tmp_path)
    assert [r.get("status") for r in results] == [200, 200, 200], results
    # built-in table for autumn and daniel; the cluster's own entry wins for troy
    assert [r.body["voice"] for r in srv.stream_requests] == ["tara", "dan", "leah"]
