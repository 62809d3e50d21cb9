"""The pure pieces behind the compatibility surfaces: time-stretch, resampling, instructions."""

from __future__ import annotations

import numpy as np
import pytest

from orpheus_gateway.audio import PcmPipeline, Resample, TimeStretch, atempo_factors
from orpheus_gateway.instructions import apply_instructions

RATE = 24_000


def tone(seconds: float, hz: float = 220.0, rate: int = RATE) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (8000 * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()


def run(stage, pcm: bytes, chunk: int = 962) -> tuple[bytes, int]:
    """Feed in odd-sized chunks; returns (all output, bytes out before the flush)."""
    out = b"".join(stage.process(pcm[i:i + chunk]) for i in range(0, len(pcm), chunk))
    return out + stage.flush(), len(out)


def dominant_hz(pcm: bytes, rate: int) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(float)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[int(np.argmax(spectrum))])


@pytest.mark.parametrize("speed", [0.25, 0.5, 0.8, 1.25, 1.5, 2.0, 4.0])
def test_time_stretch_changes_duration_not_pitch(speed):
    out, before_flush = run(TimeStretch(speed), tone(2.0))
    seconds = len(out) / 2 / RATE
    assert seconds == pytest.approx(2.0 / speed, rel=0.03)
    assert before_flush >= 0.8 * len(out)  # it streams: most audio comes before the end
    assert dominant_hz(out, RATE) == pytest.approx(220.0, abs=5.0)


def test_atempo_chain_keeps_each_factor_in_its_blending_range():
    for speed in (0.25, 0.3, 0.5, 1.0, 2.0, 3.0, 4.0):
        factors = atempo_factors(speed)
        assert all(0.5 <= f <= 2.0 for f in factors)
        assert np.prod(factors) == pytest.approx(speed)
    for bad in (0.2, 4.5):
        with pytest.raises(ValueError):
            atempo_factors(bad)


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
def test_resample_streams_to_the_asked_rate(rate):
    out, before_flush = run(Resample(rate), tone(1.0, 440.0))
    assert len(out) // 2 == pytest.approx(rate, abs=2)
    assert before_flush >= 0.9 * len(out)
    assert dominant_hz(out, rate) == pytest.approx(440.0, abs=3.0)


@pytest.mark.parametrize("make", [lambda: TimeStretch(1.25), lambda: Resample(48000)],
                         ids=["time-stretch", "resample"])
def test_a_stage_fed_odd_length_pieces_keeps_every_byte(make):
    """Pieces of 4801 bytes split samples: the odd byte is carried to the next piece, not
    dropped (dropping it shifts every later sample by a byte: noise, and short audio)."""
    pcm = tone(1.0)
    whole = make()
    expected = whole.process(pcm) + whole.flush()
    out, _ = run(make(), pcm, chunk=4801)
    assert len(out) == len(expected)
    a, b = (np.frombuffer(x, dtype="<i2").astype(float) for x in (out, expected))
    assert np.corrcoef(a, b)[0, 1] > 0.99


def test_pipeline_passes_pcm_through_untouched_at_defaults():
    pcm = tone(0.3)
    p = PcmPipeline()
    assert p.process(pcm[:101]) + p.process(pcm[101:]) + p.flush() == pcm


def test_pipeline_stretches_then_resamples_across_odd_byte_boundaries():
    out, _ = run(PcmPipeline(speed=1.25, sample_rate=48000), tone(2.0), chunk=777)
    assert len(out) / 2 / 48000 == pytest.approx(2.0 / 1.25, rel=0.03)
    with pytest.raises(ValueError):
        PcmPipeline(sample_rate=4000)


@pytest.mark.parametrize("instructions, tags", [
    ("Speak in a cheerful and positive tone.", ("<chuckle>",)),
    ("Sound tired, then laugh", ("<sigh>", "<laugh>")),
    ("sad sad SAD", ("<sigh>",)),
    ("Whisper like a pirate.", ()),
    ("", ()),
    (None, ()),
])
def test_instructions_become_orpheus_tags(instructions, tags):
    applied = apply_instructions("Hello.", instructions)
    assert applied.tags == tags
    assert applied.text == ("".join(tags) + " Hello." if tags else "Hello.")
    assert applied.header == ("applied: " + " ".join(tags) if tags else "ignored")


def test_instructions_add_at_most_two_tags():
    assert len(apply_instructions("x", "laugh sigh gasp yawn").tags) == 2


def encode_all(fmt: str, rate: int, pcm: bytes) -> bytes:
    from orpheus_gateway.encoders import make_encoder

    pipe, enc = PcmPipeline(sample_rate=rate), make_encoder(fmt, rate)
    try:
        out = b"".join(enc.encode(pipe.process(pcm[i:i + 4800])) for i in range(0, len(pcm), 4800))
        return out + enc.encode(pipe.flush()) + enc.finish()
    finally:
        enc.close()


@pytest.mark.parametrize("fmt, rate, decoded_rate", [
    ("ogg", 24000, 24000), ("ogg", 16000, 16000), ("ogg", 44100, 48000), ("ogg", 22050, 48000),
    ("mulaw", 8000, 8000), ("mulaw", 16000, 16000), ("wav", 8000, 8000), ("wav", 48000, 48000),
    ("flac", 22050, 22050), ("mp3", 44100, 44100), ("aac", 16000, 16000),
])
def test_encoders_at_client_sample_rates(fmt, rate, decoded_rate):
    import io

    import av

    data = encode_all(fmt, rate, tone(1.0, 300.0))
    options = {"sample_rate": str(rate)} if fmt == "mulaw" else {}
    with av.open(io.BytesIO(data), format="mulaw" if fmt == "mulaw" else None,
                 options=options) as container:
        frames = list(container.decode(audio=0))
    seconds = sum(f.samples for f in frames) / frames[0].sample_rate
    if fmt == "ogg":
        assert data[:4] == b"OggS" and b"OpusHead" in data[:200]
        decoded_rate = 48000  # FFmpeg's Opus decoder always plays at 48 kHz
    assert frames[0].sample_rate == decoded_rate
    slack = 2048 / rate if fmt in ("mp3", "aac") else 0.0  # encoder delay and padding
    assert 1.0 - 0.005 <= seconds <= 1.0 + slack + 0.01
    if fmt == "mulaw":
        assert len(data) == rate  # one byte a sample, no header


# --- model names, voice table, Canopy's framing, Api-Key ------------------------------------------
def test_model_names_served_checked_and_listed():
    from orpheus_gateway.models import ModelNames
    from orpheus_tts import protocol as p

    named = ModelNames("canopylabs/orpheus-arabic-saudi", created=7)
    assert named.served(["fake"])[0] == "canopylabs/orpheus-arabic-saudi"
    named.check("canopylabs/orpheus-arabic-saudi", [])
    named.check("gpt-4o-mini-tts", [])
    with pytest.raises(p.RequestError) as exc:
        named.check("canopylabs/orpheus-v1-english", ["fake"])
    assert exc.value.code is p.ErrorCode.UNKNOWN_MODEL and exc.value.code.status == 400
    assert "canopylabs/orpheus-arabic-saudi" in exc.value.message and exc.value.param == "model"
    unnamed = ModelNames()
    unnamed.check("anything", [])  # nothing known yet: the workers have not said
    assert unnamed.served(["b", "a"])[:2] == ["a", "b"]
    with pytest.raises(p.RequestError):
        unnamed.check("anything", ["a"])
    listing = named.listing([])
    assert listing["object"] == "list" and listing["data"][0] == {
        "id": "canopylabs/orpheus-arabic-saudi", "object": "model", "created": 7,
        "owned_by": "orpheus-tts"}


def test_voice_table_groq_names_overrides_and_served_names_first():
    from orpheus_gateway.voice_map import VoiceMap

    english = ["tara", "leah", "jess", "leo", "dan", "mia", "zac", "zoe"]
    vm = VoiceMap()
    assert [vm.resolve(v, english) for v in ("autumn", "Diana", "troy", "alloy")] == [
        "tara", "leah", "zac", "tara"]
    vm = VoiceMap({"troy": "leah", "noura": "mia"})
    assert vm.resolve("troy", english) == "leah" and vm.resolve("autumn", english) == "tara"
    assert vm.resolve("noura", english) == "mia"
    arabic = ["abdullah", "fahad", "sultan", "lulwa", "noura", "aisha"]
    assert VoiceMap().resolve("Noura", arabic) == "noura"
    assert VoiceMap({"noura": "tara"}).resolve("noura", arabic) == "noura"  # served wins


def test_canopy_request_and_framing():
    from orpheus_tts import protocol as p
    from orpheus_tts.protocol import canopy as c

    req = c.parse_canopy_request('{"prompt":"Hi","voice":"tara","max_tokens":3000,'
                                 '"temperature":1.0,"repetition_penalty":1.1,"request_id":"r1"}')
    assert req.multiplexed and req.tts_body() == {
        "text": "Hi", "voice": "tara", "max_tokens": 3000, "temperature": 1.0,
        "repetition_penalty": 1.1}
    for bad in ("{", "[]", '{"voice":"tara"}', '{"prompt":"x","speed":2}'):
        with pytest.raises(p.RequestError):
            c.parse_canopy_request(bad)
    assert c.client_request_id('{"request_id":"r9","prompt":7}') == "r9"
    assert c.client_request_id("nope") is None
    assert c.audio(b"\x01\x02", 258) == b"\x00\x00\x01\x02\x01\x02"
    assert c.audio(b"\x01\x02") == b"\x01\x02"


def test_canopy_error_text_mentions_auth_or_key_only_for_auth():
    from orpheus_gateway.canopy_session import _text
    from orpheus_tts import protocol as p

    text = _text(p.ErrorCode.RATE_LIMITED, "Rate limit reached: 600 requests for this key.")
    assert text.startswith("rate_limit_exceeded: ")
    assert "key" not in text.lower() and "auth" not in text.lower()
    assert "key" in _text(p.ErrorCode.UNAUTHORIZED, "Incorrect API key provided.").lower()


def test_api_key_scheme_is_a_key():
    from orpheus_gateway.auth import presented_key

    assert presented_key({"authorization": "Api-Key sk-1"}) == "sk-1"
    assert presented_key({"authorization": "Api-Key "}) is None
