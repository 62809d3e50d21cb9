"""Model pools: does a queue held full on one pool delay the other pool's first audio?

One gateway process (`--pools-file`, API keys on) over two pools, English and Arabic, each one
fake v1 worker process (`python -m tests.support.fake_server`: a real HTTP server that streams
10 chunks of 100 ms, the first after 50 ms). The English pool is probed with sequential
requests (`model` = the English name, voice `tara`) and each probe's time to first audio (the
first `chunk` line at the client) is recorded, twice: with the Arabic pool idle, then while the
Arabic pool holds a burst of BURST concurrent requests that each wait HOLD_S in its worker's
queue before their first chunk (the fake's `[[fake first_delay_s=... queue_depth=...]]`
directive: the worker reports the queue, as a full real one would). The Arabic burst's own TTFA
is reported too, to show its queue really was held for the whole probe.

Fake workers, not the stand-in engine: on this 2-core machine two CPU engines would share the
cores, and the figure would measure that rather than the gateway's queueing (on a cluster each
pool has its own GPU nodes).

Run: `make bench-pools` (or `.venv/bin/python benchmarks/bench_pools.py [--quick]`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_gateway import pct, wait_http  # noqa: E402
from benchmarks.report import markdown_table, write_section  # noqa: E402
from orpheus_tts.protocol import CHUNK_LINE_PREFIX, STREAM_PATH  # noqa: E402
from orpheus_tts.up import STAND_IN_POOLS, Child, free_port, spawn, stop_children  # noqa: E402

ENGLISH, ARABIC = STAND_IN_POOLS["english"][0], STAND_IN_POOLS["arabic"][0]
KEY = "bench-pools-key-0123456789"
BURST = 64
HOLD_S = 10.0
PROBES = 40
ARABIC_VOICES = "fahad,sultan,lulwa,noura"


def start_worker(name: str, voices: str, log_dir: Path) -> Child:
    port = free_port()
    child = spawn(name, f"http://127.0.0.1:{port}", [
        sys.executable, "-m", "tests.support.fake_server", "--port", str(port), "--chunks", "10",
        "--chunk-samples", "2400", "--chunk-delay-ms", "100", "--first-delay-ms", "50",
        "--worker-id", name, "--voices", voices], log_dir, env={"PYTHONPATH": str(ROOT)})
    wait_http(child.url, children=[child])
    return child


def start_gateway(en: Child, ar: Child, log_dir: Path) -> Child:
    pools = log_dir / "pools.json"
    pools.write_text(json.dumps({"default_pool": "english", "pools": [
        {"name": "english", "model": ENGLISH, "workers": [en.url]},
        {"name": "arabic", "model": ARABIC, "workers": [ar.url]}]}))
    keys = log_dir / "keys"
    keys.write_text(KEY + "\n")
    port = free_port()
    child = spawn("gateway", f"http://127.0.0.1:{port}", [
        sys.executable, "-m", "orpheus_tts", "gateway", "--port", str(port), "--pools-file",
        str(pools), "--api-keys-file", str(keys), "--rate-limit-rpm", "0",
        "--max-streams-per-key", "0"], log_dir)
    wait_http(child.url, children=[child])
    return child


async def ttfa(client: httpx.AsyncClient, url: str, body: dict, whole: bool = True) -> float:
    """Seconds to the first chunk line; `whole=False` hangs up right after it (a probe)."""
    start = time.perf_counter()
    async with client.stream("POST", url + STREAM_PATH, json=body) as r:
        r.raise_for_status()
        first = None
        async for line in r.aiter_lines():
            if first is None and line.startswith(CHUNK_LINE_PREFIX.decode()):
                first = time.perf_counter() - start
                if not whole:
                    break
    if first is None:
        raise RuntimeError(f"no audio for {body}")
    return first


async def probe(client: httpx.AsyncClient, url: str, n: int) -> list[float]:
    body = {"text": "Hello there.", "model": ENGLISH, "voice": "tara"}
    return [await ttfa(client, url, body, whole=False) for _ in range(n)]


async def run(url: str, probes: int, burst: int, hold_s: float) -> dict:
    headers = {"Authorization": f"Bearer {KEY}"}
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(headers=headers, timeout=60, limits=limits) as client:
        await probe(client, url, 5)  # warm connections
        idle = await probe(client, url, probes)
        held = {"text": f"[[fake first_delay_s={hold_s} queue_depth={burst}]] مرحبا",
                "model": ARABIC, "voice": "noura"}
        burst_tasks = [asyncio.create_task(ttfa(client, url, held)) for _ in range(burst)]
        await asyncio.sleep(0.5)  # the burst is on the Arabic worker, waiting
        started = time.perf_counter()
        during = await probe(client, url, probes)
        probe_s = time.perf_counter() - started
        burst_ttfa = await asyncio.gather(*burst_tasks)
    return {"idle": idle, "during": during, "burst": burst_ttfa, "probe_s": probe_s}


def row(name: str, values: list[float]) -> list[object]:
    return [name, len(values), f"{pct(values, 0.5) * 1000:.0f}", f"{pct(values, 0.95) * 1000:.0f}",
            f"{max(values) * 1000:.0f}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_pools")
    parser.add_argument("--quick", action="store_true", help="fewer probes, no doc update")
    args = parser.parse_args(argv)
    probes = 10 if args.quick else PROBES
    log_dir = Path(tempfile.mkdtemp(prefix="bench-pools-"))
    children: list[Child] = []
    try:
        en = start_worker("english-1", "tara,leah,jess,leo,dan,mia,zac,zoe", log_dir)
        children.append(en)
        ar = start_worker("arabic-1", ARABIC_VOICES, log_dir)
        children.append(ar)
        gw = start_gateway(en, ar, log_dir)
        children.append(gw)
        res = asyncio.run(run(gw.url, probes, BURST, HOLD_S))
    finally:
        stop_children(children)
    table = markdown_table(
        ["requests", "n", "TTFA p50 ms", "p95 ms", "max ms"],
        [row("English pool, Arabic pool idle", res["idle"]),
         row(f"English pool, Arabic pool holding {BURST} queued", res["during"]),
         row(f"the Arabic burst itself (held {HOLD_S:.0f} s)", res["burst"])], align="lrrrr")
    inside = res["probe_s"] + 0.5 < min(res["burst"])
    body = (f"{table}\n\nEach probe hangs up after its first chunk. The probes during the burst "
            f"took {res['probe_s']:.1f} s in all, started 0.5 s into it, "
            + ("so every one ran while the Arabic queue was held. " if inside else
               "**longer than the Arabic queue was held: the second row is not valid.** ")
            + "The worker's schedule puts the first chunk at 50 ms, so TTFA above that is the "
            "gateway and the client.\n")
    print(body)
    if not args.quick:
        write_section(
            "pools", "Model pools: a full queue on one pool vs the other's first audio",
            "make bench-pools",
            "one gateway process over two pools of one fake worker process each; sequential "
            "English probes, Arabic pool idle, then while it holds a burst waiting in its queue "
            "(benchmarks/bench_pools.py docstring). Shared 2-core VM (other jobs were running).",
            body, {k: v for k, v in res.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
