"""Where streaming input's time to first audio goes, without the engine's noise.

The clients of `bench_textstream` (streaming input; the Pipecat and end-mark baselines) speak a
reply of that bench through a gateway of the tree given (default: this one) and two fake
workers (`tests.support.fake_server`) that answer every request with its first audio after
exactly 300 ms, then 20 chunks 40 ms apart. The engine's part is then a constant, so "first
sentence's last token → first audio" minus 300 ms is the gateway's, the session's and the
segmenter's own part, and any fixed overhead of the streaming path (a timer waited on, an extra
round trip, batching) shows up against the baselines. Same rounds and shuffled order as the
bench; no engine, so it needs no heavy lock.

Run: `.venv/bin/python benchmarks/probe_textstream_path.py [--reply NAME] [--tree TREE]`
(TREE: a checkout to measure, e.g. an older commit's `git archive`; its gateway runs, this
tree's clients drive it).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(HERE)]

from benchmarks import bench_gateway as bg  # noqa: E402
from benchmarks import bench_textstream as bt  # noqa: E402
from orpheus_tts.sdk import OrpheusTTS  # noqa: E402

FIRST_DELAY_MS = 300
ROUNDS = 8


async def measure(url: str, reply: str, rounds: int) -> list[dict]:
    async with OrpheusTTS([url], api_key=None, hedge_ttfb_ms=None) as tts:
        async with tts.session() as session:
            rows, _ = await bt.compare(session, reply, bt.RATES, rounds, rtf=1.0)
    for rate in bt.RATES:
        s = next(r for r in rows if r["rate"] == rate and r["client"] == bt.STREAMING)
        for base in (bt.PIPECAT, bt.END_MARK):
            b = next(r for r in rows if r["rate"] == rate and r["client"] == base)
            print(f"{rate:>3} tok/s {base} ÷ streaming: {b['ttfa_s'] / s['ttfa_s']:.2f}×")
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reply", choices=sorted(bt.REPLIES), default=bt.DEFAULT_REPLY)
    ap.add_argument("--tree", type=Path, default=HERE)
    ap.add_argument("--rounds", type=int, default=ROUNDS)
    args = ap.parse_args()
    bg.CHUNKS, bg.CHUNK_DELAY_MS, bg.FIRST_DELAY_MS = 20, 40, FIRST_DELAY_MS
    log = Path(tempfile.mkdtemp(prefix="probe-textstream-"))
    workers = bg.start_fake_workers(2, log)
    bg.ROOT = args.tree.resolve()  # the gateway of the tree measured
    gateway = bg.start_gateway([w.url for w in workers], log, shipped=False)
    try:
        time.sleep(2)
        asyncio.run(measure(gateway.url, args.reply, args.rounds))
    finally:
        bg.stop_children([gateway, *workers])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
