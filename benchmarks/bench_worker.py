"""`make bench-worker`: the worker's streaming decoder against Canopy's reference decoder.

Measured on the random-weight SNAC 24 kHz of the stand-in checkpoint with its noise blocks off
(deterministic), so streamed audio can be compared sample by sample with a one-shot decode:

1. tokens before first audio, decoder calls and frames decoded per emitted frame, length and SNR
   against the one-shot decode: this worker's sliding window (keeping up: one new frame per
   step; behind: five) and Canopy's reference windowing (`orpheus_tts/decoder.py`: after every
   7th token once 28 are in, decode the last 4 frames and keep samples 2048..4096), implemented
   here on the same decoder;
2. worker CPU time per second of audio excluding model and decoder: token parsing, windowing,
   the decode loop, PCM conversion and NDJSON framing, with a decoder that returns silence;
3. SNAC throughput, one batched call vs one call per window, at batch 1, 8 and 32 (6-frame
   windows, the size of a live stream's window) on CPU, and on a GPU when one is present.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "worker"))

from benchmarks.report import write_section  # noqa: E402
from orpheus_tts.protocol import chunk_line  # noqa: E402
from orpheus_worker import tokens as T  # noqa: E402
from orpheus_worker.snac_stream import (  # noqa: E402
    DecodeLoop, SnacDecoder, StreamingDecoder, load_snac, to_pcm16)

SPF = T.SAMPLES_PER_FRAME
MS_PER_FRAME = 1000 * SPF / 24_000


def snr_db(ref: np.ndarray, got: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref ** 2) / max(np.sum((got - ref) ** 2), 1e-30)))


def random_frames(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, T.CODEBOOK_SIZE, size=(n, T.FRAME_TOKENS))


class CountingDecoder:
    """Wraps a SnacDecoder, counting calls and frames decoded."""

    def __init__(self, inner: SnacDecoder):
        self.inner = inner
        self.calls = 0
        self.frames = 0

    def decode(self, batch: list[np.ndarray]) -> np.ndarray:
        self.calls += 1
        self.frames += sum(w.shape[0] for w in batch)
        return self.inner.decode(batch)


def run_ours(snac: SnacDecoder, frames: np.ndarray, burst: int) -> dict:
    dec = CountingDecoder(snac)
    stream = StreamingDecoder()
    parser = T.FrameParser()
    ids = [t for f in frames for t in T.frame_tokens(f)]
    out: list[np.ndarray] = []
    first_at = None
    step = burst * T.FRAME_TOKENS
    for i in range(0, len(ids), step):
        stream.push(parser.feed(ids[i:i + step]))
        window = stream.plan()
        if window is not None:
            audio = stream.accept(window, dec.decode([stream.window_codes(window)])[0])
            if len(audio) and first_at is None:
                first_at = min(i + step, len(ids))
            out.append(audio)
    stream.finish()
    while (window := stream.plan()) is not None:
        out.append(stream.accept(window, dec.decode([stream.window_codes(window)])[0]))
    audio = np.concatenate(out)
    ref = snac.decode_one(frames)
    return decoding_quality(dec, first_at, len(frames), audio, ref, snr_db(ref, audio))


def decoding_quality(dec: CountingDecoder, first_at: int | None, frames_emitted: int,
                     audio: np.ndarray, ref: np.ndarray, snr: float) -> dict:
    """One decoder's row: latency, decoder work per emitted frame, and fidelity to one-shot."""
    return {
        "tokens_before_first_audio": first_at,
        "decoder_calls_per_frame": dec.calls / frames_emitted,
        "frames_decoded_per_frame": dec.frames / frames_emitted,
        "samples": len(audio),
        "one_shot_samples": len(ref),
        "missing_ms": (len(ref) - len(audio)) * 1000 / 24_000,
        "snr_db": snr,
    }


def run_reference(snac: SnacDecoder, frames: np.ndarray) -> dict:
    """Canopy's tokens_decoder/convert_to_audio windowing, on parsed codes."""
    dec = CountingDecoder(snac)
    buffer: list[int] = []
    out: list[np.ndarray] = []
    emitted_frames: list[int] = []
    first_at = None
    count = 0
    for f in frames:
        for code in f:
            # the reference keeps only codes > 0; random codes make 0 rare, so count it in
            buffer.append(int(code))
            count += 1
            if count % 7 == 0 and count > 27:
                window = np.array(buffer[-28:]).reshape(4, 7)
                audio = dec.decode([window])[0]
                out.append(audio[SPF:2 * SPF])
                emitted_frames.append(count // 7 - 3)  # frame index the slice belongs to
                if first_at is None:
                    first_at = count
    audio = np.concatenate(out)
    ref = snac.decode_one(frames)
    lo, hi = emitted_frames[0] * SPF, (emitted_frames[-1] + 1) * SPF
    return {
        **decoding_quality(dec, first_at, len(emitted_frames), audio, ref,
                           snr_db(ref[lo:hi], audio)),  # on the part it emits at all
        "dropped_frames": len(frames) - len(emitted_frames),
    }


class SilentDecoder:
    """Stands in for SNAC: the pipeline's own cost without the decoder."""

    def decode(self, batch: list[np.ndarray]) -> np.ndarray:
        return np.zeros((len(batch), batch[0].shape[0] * SPF), dtype=np.float32)


async def _pipeline(frames: np.ndarray, streams: int) -> int:
    loop = DecodeLoop(SilentDecoder())  # type: ignore[arg-type]
    loop.start()
    ids = [t for f in frames for t in T.frame_tokens(f)]

    async def one() -> int:
        stream = loop.open()
        parser = T.FrameParser()
        seq = size = 0

        async def feed() -> None:
            for i in range(0, len(ids), 7):
                stream.push(parser.feed(ids[i:i + 7]))
                await asyncio.sleep(0)
            stream.finish()

        feeder = asyncio.create_task(feed())
        while (pcm := await stream.next_chunk()) is not None:
            size += len(chunk_line(seq, pcm))
            seq += 1
        await feeder
        return size

    try:
        await asyncio.gather(*(one() for _ in range(streams)))
    finally:
        await loop.stop()
    return len(frames) * SPF * streams


def pipeline_cpu(frames: np.ndarray, streams: int = 4) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    samples = asyncio.run(_pipeline(frames, streams))
    cpu = time.process_time() - c0
    audio_s = samples / 24_000
    return {"audio_s": audio_s, "cpu_s": cpu, "wall_s": time.perf_counter() - t0,
            "cpu_ms_per_audio_s": 1000 * cpu / audio_s}


def snac_throughput(snac: SnacDecoder, batch: int, window_frames: int = 6, repeat: int = 2
                    ) -> dict:
    windows = [random_frames(window_frames, seed=s) for s in range(batch)]
    snac.decode(windows[:1])  # warm up
    batched, single = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        snac.decode(windows)
        batched.append(time.perf_counter() - t)
        t = time.perf_counter()
        for w in windows:
            snac.decode([w])
        single.append(time.perf_counter() - t)
    b, s = statistics.median(batched), statistics.median(single)
    # a live stream's window emits one new frame
    return {"batch": batch, "batched_s": b, "one_by_one_s": s,
            "batched_frames_per_s": batch / b, "one_by_one_frames_per_s": batch / s,
            "speedup": s / b}


def ensure_model() -> Path:
    from tests.support.worker_proc import ensure_tiny_model

    return ensure_tiny_model()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=24, help="frames per test utterance")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads for SNAC")
    ap.add_argument("--no-write", action="store_true", help="print, do not update docs")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    model_dir = ensure_model()
    model = load_snac(str(model_dir / "snac"), disable_noise=True)
    snac = SnacDecoder(model)
    frames = random_frames(args.frames, seed=42)

    print("decoders ...", flush=True)
    ours_live = run_ours(snac, frames, burst=1)
    ours_behind = run_ours(snac, frames, burst=5)
    reference = run_reference(snac, frames)
    print("pipeline CPU ...", flush=True)
    pipeline = pipeline_cpu(random_frames(600, seed=1))
    print("SNAC throughput ...", flush=True)
    cpu_tp = [snac_throughput(snac, b) for b in (1, 8, 32)]
    gpu_tp: list[dict] | None = None
    gpu_name = None
    if torch.cuda.is_available():
        gpu_name = torch.cuda.get_device_name(0)
        gpu_snac = SnacDecoder(load_snac(str(model_dir / "snac"), device="cuda",
                                         disable_noise=True), "cuda")
        gpu_tp = [snac_throughput(gpu_snac, b, repeat=5) for b in (1, 8, 32)]

    results = {"frames": args.frames, "torch_threads": args.threads,
               "ours_keeping_up": ours_live, "ours_behind_5": ours_behind,
               "reference": reference, "pipeline": pipeline, "snac_cpu": cpu_tp,
               "snac_gpu": gpu_tp, "gpu": gpu_name}

    def row(name: str, r: dict) -> str:
        return (f"| {name} | {r['tokens_before_first_audio']} | "
                f"{r['decoder_calls_per_frame']:.2f} | {r['frames_decoded_per_frame']:.2f} | "
                f"{r['samples']} / {r['one_shot_samples']} | {r['missing_ms']:.0f} ms | "
                f"{r['snr_db']:.1f} dB |")

    lines = [
        f"Utterance: {args.frames} random frames ({args.frames * MS_PER_FRAME / 1000:.2f} s), "
        f"SNAC 24 kHz stand-in, noise off, torch threads {args.threads}.",
        "",
        "| decoder | tokens before first audio | decoder calls / frame | frames decoded / frame "
        "| samples (streamed / one-shot) | audio missing | SNR vs one-shot |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        row("this worker, keeping up (1 new frame per step)", ours_live),
        row("this worker, behind (5 new frames per step)", ours_behind),
        row("Canopy reference windowing", reference)
        + f" (SNR over the {args.frames - reference['dropped_frames']} frames it emits)",
        "",
        f"Worker CPU per audio second, excluding model and decoder (parse, window, decode loop, "
        f"PCM, NDJSON; 4 streams x {pipeline['audio_s'] / 4:.1f} s): "
        f"**{pipeline['cpu_ms_per_audio_s']:.2f} ms CPU per audio second**.",
        "",
        "SNAC decode throughput, 6-frame windows (one new frame each), frames emitted per "
        "second:",
        "",
        "| batch | CPU one-by-one | CPU batched | CPU speedup | GPU |",
        "| --- | --- | --- | --- | --- |",
    ]
    for i, r in enumerate(cpu_tp):
        if gpu_tp:
            g = gpu_tp[i]
            gpu = (f"{gpu_name}: {g['one_by_one_frames_per_s']:.0f} -> "
                   f"{g['batched_frames_per_s']:.0f} ({g['speedup']:.1f}x)")
        else:
            gpu = "not run: no GPU lent to this task"
        lines.append(f"| {r['batch']} | {r['one_by_one_frames_per_s']:.1f} | "
                     f"{r['batched_frames_per_s']:.1f} | {r['speedup']:.2f}x | {gpu} |")
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section(
            "worker", "Worker: streaming SNAC decoder", "make bench-worker",
            "benchmarks/bench_worker.py on the stand-in checkpoint's random-weight SNAC with noise "
            "blocks off; the reference decoder's windowing is reimplemented on the same decoder; "
            "throughput is the median of repeated runs on a shared machine (load: "
            f"{_load()}).",
            body, results)
    return 0


def _load() -> str:
    try:
        return subprocess.run(["cat", "/proc/loadavg"], capture_output=True, text=True,
                              timeout=5).stdout.split()[0]
    except Exception:  # noqa: BLE001
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
