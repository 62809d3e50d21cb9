"""Hedging: p99 time to first audio when 1 endpoint in 20 answers slowly, hedged vs unhedged,
through the SDK (`OrpheusTTS`) against 20 fake v1 servers.

At any moment one of the 20 servers answers its first chunk after SLOW_MS instead of FAST_MS;
every ROTATE requests the slow one moves to another server (a seeded schedule, the same for
both runs), so the client's latency scores cannot simply learn to avoid it. CONCURRENCY
streams run at a time, TOTAL in all, once with `hedge_ttfb_ms=HEDGE_MS` and once with hedging
off. TTFA is measured by the SDK (`StreamInfo.ttfa_ms`: from the call to the first audio).
Duplicate work = stream requests the servers received beyond one per stream.

Run: `make bench-hedge` (or `.venv/bin/python benchmarks/bench_hedge.py [--quick]`).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.report import markdown_table, write_section  # noqa: E402
from orpheus_tts.sdk import OrpheusTTS  # noqa: E402
from tests.support.fake_server import Behaviour, FakeServer  # noqa: E402

SERVERS = 20
FAST_MS = 30.0
SLOW_MS = 2000.0
HEDGE_MS = 200.0
CHUNKS = 4
CHUNK_SAMPLES = 2400
CHUNK_DELAY_MS = 10.0
CONCURRENCY = 8
TOTAL = 400
ROTATE = 40
SEED = 7


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))]


def behaviour(slow: bool) -> Behaviour:
    return Behaviour.normal(CHUNKS, chunk_samples=CHUNK_SAMPLES,
                            chunk_delay_s=CHUNK_DELAY_MS / 1000,
                            first_delay_s=(SLOW_MS if slow else FAST_MS) / 1000)


async def run(servers: list[FakeServer], hedge_ms: float | None, total: int) -> dict:
    schedule = random.Random(SEED)
    before = sum(len(s.stream_requests) for s in servers)
    ttfa: list[float] = []
    hedged = errors = 0
    slow_index = -1
    issued = 0
    lock = asyncio.Lock()

    async def next_index() -> int | None:
        nonlocal issued, slow_index
        async with lock:
            if issued >= total:
                return None
            if issued % ROTATE == 0:
                new = schedule.randrange(SERVERS)
                for i, s in enumerate(servers):
                    s.default = behaviour(i == new)
                slow_index = new
            issued += 1
            return issued

    async with OrpheusTTS([s.url for s in servers], hedge_ttfb_ms=hedge_ms,
                          timeout_s=30, max_attempts=3) as tts:
        async def worker() -> None:
            nonlocal hedged, errors
            while (n := await next_index()) is not None:
                stream = tts.stream(f"hedge benchmark {n}")
                try:
                    async for _ in stream:
                        pass
                    ttfa.append(stream.info.ttfa_ms)
                    hedged += stream.info.hedged
                except Exception:  # noqa: BLE001 - counted, the run goes on
                    errors += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        wall = time.perf_counter() - t0
    sent = sum(len(s.stream_requests) for s in servers) - before
    return {
        "hedge_ms": hedge_ms, "streams": total, "errors": errors, "hedged": hedged,
        "server_requests": sent, "duplicate_pct": 100.0 * (sent - total) / total,
        "ttfa_p50_ms": pct(ttfa, 50), "ttfa_p95_ms": pct(ttfa, 95),
        "ttfa_p99_ms": pct(ttfa, 99), "ttfa_max_ms": max(ttfa), "wall_s": wall,
    }


def table(rows: list[dict]) -> str:
    return markdown_table(
        ["client", "TTFA p50 (ms)", "p95", "p99", "max", "hedges fired", "duplicate requests",
         "errors"],
        [[f"hedged at {r['hedge_ms']:.0f} ms" if r["hedge_ms"] else "unhedged",
          *(f"{r[k]:.0f}" for k in ("ttfa_p50_ms", "ttfa_p95_ms", "ttfa_p99_ms", "ttfa_max_ms")),
          r["hedged"], f"{r['duplicate_pct']:.1f}%", f"{r['errors']}/{r['streams']}"]
         for r in rows])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100 streams per run; no doc update")
    args = ap.parse_args(argv)
    total = 100 if args.quick else TOTAL
    servers = [FakeServer(default=behaviour(False), worker_id=f"fake-{i}", tone=100 + i)
               for i in range(SERVERS)]
    try:
        for s in servers:
            s.start()
        rows = [asyncio.run(run(servers, None, total)), asyncio.run(run(servers, HEDGE_MS, total))]
    finally:
        for s in servers:
            s.stop()
    body = (
        f"{SERVERS} fake servers in the benchmark's process; first chunk after {FAST_MS:.0f} ms, "
        f"or {SLOW_MS:.0f} ms on the one slow server, which moves every {ROTATE} requests. "
        f"{CONCURRENCY} concurrent streams, {total} per run, one `OrpheusTTS` per run.\n\n"
        + table(rows) + "\n\n"
        f"p99 ratio unhedged ÷ hedged: {rows[0]['ttfa_p99_ms'] / rows[1]['ttfa_p99_ms']:.1f}×."
    )
    if not args.quick:
        write_section("hedge", "Hedging: time to first audio with 1 slow endpoint in 20",
                      "make bench-hedge",
                      "TTFA from StreamInfo.ttfa_ms (SDK-measured, call to first audio); "
                      "duplicate requests counted at the fake servers.", body, {"rows": rows})
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
