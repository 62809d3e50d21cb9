"""Streaming SNAC decoding on a random-weight SNAC 24 kHz with its noise blocks switched off."""

import asyncio

import numpy as np
import pytest

from orpheus_worker.snac_stream import (
    DecodeLoop, SnacDecoder, StreamingDecoder, batch_bucket, effective_mode, load_snac,
    plan_batches, to_pcm16)
from orpheus_worker.tokens import FRAME_TOKENS, SAMPLES_PER_FRAME

REFERENCE_DECODES_PER_FRAME = 4  # Canopy's decoder: a 4-frame window for every new frame


@pytest.fixture(scope="module")
def snac(tiny_model):
    import torch

    torch.set_num_threads(1)
    return SnacDecoder(load_snac(str(tiny_model / "snac"), disable_noise=True))


def codes(n, seed=0):
    return np.random.default_rng(seed).integers(0, 4096, size=(n, FRAME_TOKENS))


def snr_db(ref, got):
    return 10 * np.log10(np.sum(ref ** 2) / max(np.sum((got - ref) ** 2), 1e-30))


def run_stream(snac, frames, burst):
    """Push `burst` frames between decodes; return audio, calls, tokens before first audio."""
    dec = StreamingDecoder()
    out, calls, first_at = [], 0, None
    for i in range(0, len(frames), burst):
        dec.push(frames[i:i + burst].tolist())
        window = dec.plan()
        if window is not None:
            out.append(dec.accept(window, snac.decode([dec.window_codes(window)])[0]))
            calls += 1
            if first_at is None and len(out[-1]):
                first_at = min(i + burst, len(frames)) * FRAME_TOKENS
    dec.finish()
    while (window := dec.plan()) is not None:
        out.append(dec.accept(window, snac.decode([dec.window_codes(window)])[0]))
        calls += 1
    assert dec.done
    return np.concatenate(out), calls, first_at


def test_decoding_is_deterministic_without_noise(snac):
    frames = codes(6)
    assert np.array_equal(snac.decode_one(frames), snac.decode_one(frames))


@pytest.mark.parametrize("burst", [1, 4])
def test_streamed_audio_matches_one_shot_length_and_fidelity(snac, burst):
    frames = codes(16, seed=burst)
    reference = snac.decode_one(frames)
    assert len(reference) == SAMPLES_PER_FRAME * len(frames)
    streamed, _, _ = run_stream(snac, frames, burst)
    assert len(streamed) == len(reference)
    assert snr_db(reference, streamed) >= 50.0


def test_first_audio_after_at_most_two_frames(snac):
    _, _, first_at = run_stream(snac, codes(10), burst=1)
    assert first_at is not None and first_at <= 14
    dec = StreamingDecoder()
    dec.push(codes(1).tolist())
    assert dec.plan() is None  # one frame is not enough context yet


def test_one_decode_covers_several_frames_when_behind(snac):
    frames = codes(20)
    _, calls, _ = run_stream(snac, frames, burst=5)
    per_frame = calls / len(frames)
    assert per_frame <= 0.25 < REFERENCE_DECODES_PER_FRAME


def test_short_stream_flushes_every_frame(snac):
    for n in (1, 2, 3):
        streamed, _, _ = run_stream(snac, codes(n, seed=n), burst=1)
        assert len(streamed) == n * SAMPLES_PER_FRAME
        assert snr_db(snac.decode_one(codes(n, seed=n)), streamed) >= 50.0


def test_batched_windows_equal_solo_decodes(snac):
    streams = []
    for n, new, seed in ((9, 2, 1), (10, 1, 2), (12, 4, 3)):
        d = StreamingDecoder()
        d.push(codes(n, seed).tolist())
        w = d.plan()
        d.accept(w, snac.decode([d.window_codes(w)])[0])
        d.push(codes(new, seed + 10).tolist())  # streams with history, different backlogs
        streams.append(d)
    groups = plan_batches(streams)
    batched = {}
    for group in groups:
        audio = snac.decode([d.window_codes(w) for d, w in group])
        for row, (d, w) in enumerate(group):
            batched[id(d)] = (w, audio[row])
    assert len(groups) == 1  # windows were made equal in length and shared one call
    for d in streams:
        w, audio = batched[id(d)]
        solo = snac.decode([d.window_codes(w)])[0]
        base = w.start * SAMPLES_PER_FRAME
        got = audio[w.emit_from - base:w.emit_to - base]
        want = solo[w.emit_from - base:w.emit_to - base]
        assert snr_db(want, got) >= 80.0


def test_pcm16_conversion_clips():
    assert to_pcm16(np.array([0.0, 1.5, -2.0], dtype=np.float32)) == \
        np.array([0, 32767, -32767], dtype="<i2").tobytes()


async def test_decode_loop_streams_many_and_drops_cancelled_work(snac):
    loop = DecodeLoop(snac)
    loop.start()
    calls_before = snac.calls
    try:
        frames = [codes(8, seed=s) for s in range(3)]
        streams = [loop.open() for _ in frames]
        cancelled = loop.open()
        for s, f in zip(streams, frames):
            s.push(f[:4].tolist())
        cancelled.push(codes(4).tolist())
        cancelled.close()
        cancelled.close()  # idempotent
        for s, f in zip(streams, frames):
            s.push(f[4:].tolist())
            s.finish()

        async def drain(stream):
            pcm = b""
            while (chunk := await stream.next_chunk()) is not None:
                pcm += chunk
            return pcm

        outs = await asyncio.wait_for(asyncio.gather(*(drain(s) for s in streams)), 120)
        # everything was pushed before the loop ran: one SNAC call for three streams x 8 frames
        assert snac.calls - calls_before == 1
        for pcm, f in zip(outs, frames):
            assert len(pcm) == 2 * SAMPLES_PER_FRAME * len(f)
            ref = np.frombuffer(to_pcm16(snac.decode_one(f)), "<i2").astype(np.float64)
            got = np.frombuffer(pcm, "<i2").astype(np.float64)
            assert snr_db(ref, got) >= 40.0  # int16 quantisation of a quiet random signal
        assert loop.active == 0
        assert cancelled.decoder.emitted == 0
    finally:
        await loop.stop()


async def test_a_lone_stream_is_decoded_without_waiting_for_company(snac):
    loop = DecodeLoop(snac)
    loop.start()
    try:
        stream = loop.open()
        stream.push(codes(2).tolist())  # two frames, stream still open, nobody else around
        chunk = await asyncio.wait_for(stream.next_chunk(), 120)
        assert chunk and len(chunk) == 2 * (2 * SAMPLES_PER_FRAME - stream.decoder.right_context)
        stream.close()
    finally:
        await loop.stop()


# --- decoder modes (`--snac-mode`, `--snac-dtype`); `make bench-gpu` measures them -------------


def test_batch_buckets_are_powers_of_two():
    assert [batch_bucket(n) for n in (1, 2, 3, 4, 5, 8, 9, 33)] == [1, 2, 4, 4, 8, 8, 16, 64]


def test_cuda_graphs_need_cuda(tiny_model):
    model = load_snac(str(tiny_model / "snac"), disable_noise=True)
    with pytest.raises(ValueError, match="CUDA"):
        SnacDecoder(model, "cpu", mode="cudagraphs")
    with pytest.raises(ValueError, match="mode"):
        SnacDecoder(model, "cpu", mode="fast")
    assert effective_mode("cudagraphs", "cpu") == "eager"  # --snac-device auto on a CPU host
    assert effective_mode("cudagraphs", "cuda:0") == "cudagraphs"


def test_padded_batches_return_only_their_rows(tiny_model, snac):
    """A compiled decoder sees batches padded to a power of two; callers get their rows."""
    model = load_snac(str(tiny_model / "snac"), disable_noise=True)
    dec = SnacDecoder(model, "cpu", mode="compile")
    seen = []
    dec._compiled = lambda c: seen.append(c[0].shape[0]) or model.decode(c)  # compiled stand-in
    windows = [codes(3, seed=s) for s in range(3)]
    out = dec.decode(windows)
    assert seen == [4] and out.shape == (3, 3 * SAMPLES_PER_FRAME)
    np.testing.assert_allclose(out, snac.decode(windows), atol=1e-5)


def test_a_failing_compiled_decoder_falls_back_to_eager(tiny_model, snac, caplog):
    dec = SnacDecoder(load_snac(str(tiny_model / "snac"), disable_noise=True), "cpu",
                      mode="compile")

    def broken(_codes):
        raise RuntimeError("inductor could not build")

    dec._compiled = broken
    window = [codes(3)]
    np.testing.assert_allclose(dec.decode(window), snac.decode(window), atol=1e-5)
    assert dec.mode == "eager" and "falling back to eager" in caplog.text


def test_bfloat16_decoder_stays_close_to_float32(tiny_model, snac):
    dec = SnacDecoder(load_snac(str(tiny_model / "snac"), disable_noise=True), "cpu",
                      dtype="bfloat16")
    window = [codes(5, seed=3)]
    ref, got = snac.decode(window)[0], dec.decode(window)[0]
    assert got.dtype == np.float32 and 25 < snr_db(ref, got) < 80  # close, not identical
