"""Where streaming input's time to first audio goes, without the engine's noise.

The clients of `bench_textstream` (streaming input; the end-mark and Pipecat baselines) speak
the *short first sentence* reply through a gateway of the tree given (default: this one) and
two fake workers (`tests.support.fake_server`) that answer every request with its first audio
after exactly 300 ms, then 20 chunks 40 ms apart. The engine's part is then a constant, so
"first sentence's last token → first audio" minus 300 ms is the gateway's, the session's and
the segmenter's own part. Medians of 6 alternating rounds.

Run: `.venv/bin/python benchmarks/probe_textstream_path.py [TREE]` (TREE: a checkout to
measure, e.g. an older commit's `git archive`; its gateway runs, this tree's clients drive it).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
TREE = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else HERE
sys.path[:0] = [str(HERE)]

from benchmarks import bench_gateway as bg  # noqa: E402
from benchmarks import bench_textstream as bt  # noqa: E402
from orpheus_tts.sdk import OrpheusTTS  # noqa: E402

FIRST_DELAY_MS = 300
ROUNDS = 6


async def measure(url: str) -> None:
    reply = bt.REPLIES["short first sentence"]
    end = bt.first_sentence_end(reply)
    clients = (("streaming input", bt.streaming), (bt.PIPECAT, bt.pipecat_sentences),
               (bt.END_MARK, bt.sentence_at_a_time))
    async with OrpheusTTS([url], api_key=None, hedge_ttfb_ms=None) as tts:
        async with tts.session() as session:
            for rate in bt.RATES:
                runs: dict[str, list[tuple[float, float]]] = {n: [] for n, _ in clients}
                for _ in range(ROUNDS):
                    for name, client in clients:
                        r = await client(session, reply, rate)
                        audio0 = r["timeline"].chunks[0][0]
                        runs[name].append((audio0 - r["written"][0], audio0 - r["written"][end]))
                for name, v in runs.items():
                    print(f"{rate:>3} tok/s {name:<42} first token → audio "
                          f"{statistics.median(x[0] for x in v):.3f} s, last token of the first "
                          f"sentence → audio {statistics.median(x[1] for x in v):.3f} s", flush=True)


def main() -> int:
    bg.CHUNKS, bg.CHUNK_DELAY_MS, bg.FIRST_DELAY_MS = 20, 40, FIRST_DELAY_MS
    log = Path(tempfile.mkdtemp(prefix="probe-textstream-"))
    workers = bg.start_fake_workers(2, log)
    bg.ROOT = TREE  # the gateway of the tree measured
    gateway = bg.start_gateway([w.url for w in workers], log, shipped=False)
    try:
        time.sleep(2)
        asyncio.run(measure(gateway.url))
    finally:
        bg.stop_children([gateway, *workers])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
