"""End to end on the stand-in stack: time to first audio and real-time factor at 1, 4 and 8
concurrent streams.

Starts what `orpheus-tts up` starts (a gateway and two CPU workers on the random-weight
stand-in checkpoint, `orpheus_tts.up.LocalStack`) on free ports, then streams through the
gateway with the SDK: at each concurrency, that many streams at once, ROUNDS times. Every
stream asks for MAX_TOKENS tokens (MAX_TOKENS / 7 SNAC frames of 2048 samples). TTFA is the
SDK's (`StreamInfo.ttfa_ms`, from the call to the first audio); RTF is a stream's wall time
over its audio time (under 1 is faster than real time); throughput is audio seconds produced
per wall second across all streams of the level.

Run: `make bench-e2e` (or `.venv/bin/python benchmarks/bench_e2e.py [--quick]`).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.report import markdown_table, write_section  # noqa: E402
from orpheus_tts.sdk import OrpheusTTS  # noqa: E402
from orpheus_tts.up import LocalStack, StackConfig, free_port  # noqa: E402

LEVELS = (1, 4, 8)
ROUNDS = 2
MAX_TOKENS = 280  # 40 frames: 3.4 s of audio
TEXT = "The quick brown fox jumps over the lazy dog, and then it runs back home again."
WORKER_ARGS = ["--max-num-seqs", "8", "--max-model-len", "2048"]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))]


async def one(tts: OrpheusTTS, out: list[dict]) -> None:
    t0 = time.perf_counter()
    stream = tts.stream(TEXT, max_tokens=MAX_TOKENS, timeout_s=300)
    samples = 0
    async for chunk in stream:
        samples += len(chunk) // 2
    wall = time.perf_counter() - t0
    audio = samples / 24_000
    out.append({"ttfa_ms": stream.info.ttfa_ms, "wall_s": wall, "audio_s": audio,
                "rtf": wall / audio if audio else None})


async def run(url: str, key: str | None, levels: tuple[int, ...], rounds: int) -> list[dict]:
    rows = []
    async with OrpheusTTS([url], api_key=key, hedge_ttfb_ms=None, timeout_s=300) as tts:
        await one(tts, [])  # warm-up
        for level in levels:
            streams: list[dict] = []
            t0 = time.perf_counter()
            for _ in range(rounds):
                await asyncio.gather(*(one(tts, streams) for _ in range(level)))
            wall = time.perf_counter() - t0
            ttfa = [s["ttfa_ms"] for s in streams]
            rtf = [s["rtf"] for s in streams if s["rtf"]]
            rows.append({
                "concurrent": level, "streams": len(streams),
                "ttfa_p50_ms": pct(ttfa, 50), "ttfa_p95_ms": pct(ttfa, 95),
                "rtf_mean": statistics.fmean(rtf), "rtf_max": max(rtf),
                "audio_s_per_stream": statistics.fmean(s["audio_s"] for s in streams),
                "throughput_audio_s_per_s": sum(s["audio_s"] for s in streams) / wall,
            })
            r = rows[-1]
            print(f"{level:>2} streams: TTFA p50 {r['ttfa_p50_ms']:.0f} ms p95 "
                  f"{r['ttfa_p95_ms']:.0f} ms, RTF mean {r['rtf_mean']:.2f} max "
                  f"{r['rtf_max']:.2f}, throughput {r['throughput_audio_s_per_s']:.2f} audio-s/s",
                  flush=True)
    return rows


def table(rows: list[dict]) -> str:
    return markdown_table(
        ["concurrent streams", "streams", "TTFA p50 (ms)", "TTFA p95 (ms)", "RTF mean",
         "RTF max", "audio per stream (s)", "throughput (audio s / s)"],
        [[r["concurrent"], r["streams"], f"{r['ttfa_p50_ms']:.0f}", f"{r['ttfa_p95_ms']:.0f}",
          f"{r['rtf_mean']:.2f}", f"{r['rtf_max']:.2f}", f"{r['audio_s_per_stream']:.2f}",
          f"{r['throughput_audio_s_per_s']:.2f}"] for r in rows],
        align="r" * 8)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="levels 1 and 4, one round; no doc")
    args = ap.parse_args(argv)
    levels, rounds = ((1, 4), 1) if args.quick else (LEVELS, ROUNDS)
    tmp = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    stack = LocalStack(StackConfig(port=free_port(), key_file=tmp / "key", log_dir=tmp / "logs",
                                   worker_args=WORKER_ARGS), log=print)
    try:
        stack.start()
        rows = asyncio.run(run(stack.url, stack.api_key, levels, rounds))
    finally:
        stack.stop()
    body = (
        "The stand-in stack of `make run`: a gateway and two CPU workers (vLLM CPU + SNAC on the "
        "random-weight stand-in checkpoint, sampling kept on audio tokens), "
        f"`{' '.join(WORKER_ARGS)}`. Each stream: {MAX_TOKENS} tokens "
        f"({MAX_TOKENS // 7} SNAC frames), {rounds} rounds per level, through the gateway with "
        "the SDK.\n\n" + table(rows) + "\n\n"
        "These are CPU numbers for a 2-layer random model: they measure the pipeline's "
        "overheads (scheduling, SNAC decoding, relaying), not Orpheus on a GPU."
    )
    if not args.quick:
        write_section("e2e", "End to end on the stand-in stack", "make bench-e2e",
                      "SDK-measured TTFA (call to first audio) and per-stream RTF (wall / audio) "
                      "through the gateway; throughput = audio seconds / wall second per level.",
                      body, {"rows": rows})
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
