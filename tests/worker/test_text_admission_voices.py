"""Plain-logic pieces: sentence segmentation, admission, voice sets, budgets and CLI flags."""

import asyncio

import pytest

from orpheus_tts.protocol import ErrorCode, RequestError
from orpheus_worker.admission import Admission
from orpheus_worker.config import parse_args
from orpheus_worker.engine import default_max_tokens
from orpheus_worker.text import segment
from orpheus_worker.voices import load_voice_set


def test_segments_are_bounded_ordered_and_cover_the_text():
    text = ("First sentence here. Second one, a bit longer! Third? " * 20
            + "A very long clause without any stop " * 30 + "<laugh> end.")
    segs = segment(text, 120)
    assert all(len(s) <= 120 for s in segs)
    assert " ".join(segs).split() == text.split()
    assert all("<laugh" not in s or "<laugh>" in s for s in segs)


def test_short_text_is_one_segment():
    assert segment("Hello there. How are you?", 300) == ["Hello there. How are you?"]


def test_arabic_and_cjk_sentence_ends():
    assert len(segment("مرحبا بكم؟ كيف حالك. " * 10, 40)) > 1
    assert segment("你好。 再见！", 3) == ["你好。", "再见！"]


def test_max_tokens_grows_with_text_and_is_whole_frames():
    short, long_ = default_max_tokens(20, 3.0, 0.2), default_max_tokens(400, 3.0, 0.2)
    assert short % 7 == 0 and long_ % 7 == 0
    assert long_ > 1200 > short  # Canopy's fixed 1200 would cut the long one


async def test_admission_caps_queues_and_refuses():
    adm = Admission(capacity=1, max_queue=1)
    first = adm.admit()
    assert first.granted and adm.inflight == 1
    second = adm.admit()
    assert not second.granted and adm.queue_depth == 1
    with pytest.raises(RequestError) as exc:
        adm.admit()
    assert exc.value.status == 503 and exc.value.code == ErrorCode.OVERLOADED
    assert "Retry-After" in exc.value.headers()
    waiter = asyncio.create_task(second.wait())
    first.release()
    first.release()  # idempotent
    assert await asyncio.wait_for(waiter, 5) >= 0
    assert adm.inflight == 1 and adm.queue_depth == 0
    second.release()
    assert adm.inflight == 0


async def test_released_queued_ticket_leaves_the_queue():
    adm = Admission(capacity=1, max_queue=2)
    a, b = adm.admit(), adm.admit()
    b.release()
    assert adm.queue_depth == 0
    a.release()
    assert adm.inflight == 0


async def test_draining_refuses_with_503():
    adm = Admission(capacity=2, max_queue=2)
    adm.draining = True
    with pytest.raises(RequestError) as exc:
        adm.admit()
    assert exc.value.status == 503 and exc.value.code == ErrorCode.DRAINING
    assert exc.value.headers()["Retry-After"]


def test_voice_sets_and_unknown_voice():
    en = load_voice_set("english")
    assert en.voices == ("tara", "leah", "jess", "leo", "dan", "mia", "zac", "zoe")
    assert en.resolve("Tara") == "tara" and en.resolve("alloy") == "tara"
    assert en.resolve(None) is None
    ar = load_voice_set("arabic")
    assert set(ar.voices) == {"fahad", "sultan", "lulwa", "noura"}
    with pytest.raises(RequestError) as exc:
        ar.resolve("tara")
    assert exc.value.status == 400 and exc.value.code == ErrorCode.UNKNOWN_VOICE
    assert "fahad" in exc.value.message and exc.value.param == "voice"
    assert load_voice_set("a,b").voices == ("a", "b")


def test_cli_flags():
    cfg = parse_args(["--model", "m", "--snac", "s", "--port", "0", "--max-num-seqs", "3",
                      "--max-queue", "2", "--voices", "arabic", "--constrain-to-audio-tokens",
                      "--engine-arg", "enforce_eager=true", "--engine-arg", "block_size=32"])
    assert cfg.capacity == 3 and cfg.max_queue == 2 and cfg.constrain_to_audio_tokens
    assert cfg.engine_args == {"enforce_eager": True, "block_size": 32}


async def test_failing_the_queue_wakes_waiters_with_the_error():
    adm = Admission(capacity=1, max_queue=2)
    running, queued = adm.admit(), adm.admit()
    waiter = asyncio.create_task(queued.wait())
    await asyncio.sleep(0)
    assert adm.fail_queued(RuntimeError("cut")) == 1
    with pytest.raises(RuntimeError, match="cut"):
        await asyncio.wait_for(waiter, 5)
    queued.release()
    assert adm.inflight == 1 and adm.queue_depth == 0  # the failed ticket never held a slot
    running.release()
    assert adm.inflight == 0
