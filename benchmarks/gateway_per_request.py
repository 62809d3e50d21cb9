"""Gateway CPU per request, with and without keys: many short streams (one tiny chunk, no
delay) through the gateway as `bench_gateway` starts it (`--no-auth` and as shipped), in
alternating rounds; CPU is the gateway process's user+system time (psutil) per request.

Run: `.venv/bin/python benchmarks/gateway_per_request.py [--requests N] [--concurrency C]`.
Not written to docs/benchmarks.md: docs/gateway.md ("Cost per stream") quotes it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import bench_gateway as bg  # noqa: E402
from orpheus_tts.protocol import STREAM_PATH  # noqa: E402
from orpheus_tts.up import stop_children  # noqa: E402


async def cpu_per_request(gateway: bg.Child, auth: bool, n: int, concurrency: int) -> float:
    async with aiohttp.ClientSession() as session:
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            headers = {"Authorization": f"Bearer {bg.AUTH_KEYS[i % len(bg.AUTH_KEYS)]}"} \
                if auth else {}
            async with gate, session.post(gateway.url + STREAM_PATH, json={"text": f"t {i}"},
                                          headers=headers) as r:
                if r.status != 200:
                    raise RuntimeError(f"HTTP {r.status}")
                await r.read()

        await asyncio.gather(*(one(i) for i in range(concurrency)))  # connections warm
        cpu0 = bg.tree_cpu([gateway])
        await asyncio.gather(*(one(i) for i in range(n)))
        return (bg.tree_cpu([gateway]) - cpu0) / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=500)  # per key under the default rpm
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    bg.CHUNKS, bg.CHUNK_SAMPLES, bg.CHUNK_DELAY_MS, bg.FIRST_DELAY_MS = 1, 240, 0.0, 0.0
    log_dir = Path(tempfile.mkdtemp(prefix="gateway-per-request-"))
    children = bg.start_fake_workers(1, log_dir)
    try:
        urls = [children[0].url]
        gateways = {"gateway": bg.start_gateway(urls, log_dir, shipped=False),
                    "gateway+auth": bg.start_gateway(urls, log_dir, shipped=True)}
        children += gateways.values()
        for _ in range(args.rounds):
            for name, gw in gateways.items():
                cpu = asyncio.run(cpu_per_request(gw, name == "gateway+auth", args.requests,
                                                  args.concurrency))
                print(f"{name:<13} {cpu * 1e6:6.0f} µs CPU per request", flush=True)
    finally:
        stop_children(children)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
