"""Resident memory over many messages: does the stack level off, or keep growing?

Starts what `orpheus-tts up` starts (a gateway and two CPU workers on the random-weight stand-in
checkpoint, `orpheus_tts.up.LocalStack`) on free ports, then sends MESSAGES short utterances
one after another through the gateway with the SDK. Before the first and after every STEP
messages it reads the resident set size (RSS) of the gateway and of each worker's process
tree (the worker, vLLM's engine core and its executor process) from /proc via psutil.

A leak grows with every message; warm-up (torch and SNAC buffers, allocator arenas, vLLM's
caches) grows early and stops. The table shows which one happens, and the summary line splits
the growth into the first STEP messages and the rest.

Run: `make bench-memory` (or `.venv/bin/python benchmarks/bench_memory.py [--quick]`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.report import markdown_table, write_section  # noqa: E402
from orpheus_tts.sdk import OrpheusTTS  # noqa: E402
from orpheus_tts.up import LocalStack, StackConfig, free_port  # noqa: E402
from tests.battery.support import tree_rss  # noqa: E402

MESSAGES = 400
STEP = 50
MAX_TOKENS = 28  # 4 SNAC frames, as in the soak test
MIB = 1 << 20


def sample(stack: LocalStack, sent: int) -> dict:
    children = [c for c in (stack.gateway, *stack.workers) if c is not None]
    return {"messages": sent, **{c.name: round(tree_rss(c.proc.pid) / MIB, 1) for c in children}}


async def run(stack: LocalStack, messages: int, step: int) -> list[dict]:
    rows = [sample(stack, 0)]
    async with OrpheusTTS([stack.url], api_key=stack.api_key, hedge_ttfb_ms=None,
                          timeout_s=120) as tts:
        for i in range(1, messages + 1):
            stream = tts.stream(f"Message number {i}.", max_tokens=MAX_TOKENS)
            async for _ in stream:
                pass
            if stream.info.eos is None:
                raise RuntimeError(f"message {i} ended without eos")
            if i % step == 0:
                rows.append(sample(stack, i))
                print(rows[-1], flush=True)
    return rows


def summary(rows: list[dict], step: int) -> list[list[object]]:
    names = [k for k in rows[0] if k != "messages"]
    first, warm, last = rows[0], rows[1], rows[-1]
    return [[name, f"{warm[name] - first[name]:+.1f}", f"{last[name] - warm[name]:+.1f}",
             f"{(last[name] - warm[name]) * 1024 / max(1, last['messages'] - step):.1f}"]
            for name in names]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100 messages; no doc")
    args = ap.parse_args(argv)
    messages = 100 if args.quick else MESSAGES
    tmp = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    stack = LocalStack(StackConfig(port=free_port(), key_file=tmp / "key", log_dir=tmp / "logs"),
                       log=print)
    try:
        stack.start()
        rows = asyncio.run(run(stack, messages, STEP))
    finally:
        stack.stop()
    names = [k for k in rows[0] if k != "messages"]
    body = (
        f"The stand-in stack of `make run` (a gateway and two CPU workers). {messages} messages "
        f"of {MAX_TOKENS} tokens, one after another, through the gateway with the SDK; the "
        "gateway spreads them over both workers. RSS in MiB; a worker's figure is its whole "
        "process tree.\n\n"
        + markdown_table(["messages", *names], [[r["messages"], *(r[n] for n in names)]
                                                for r in rows], align="r" * (len(names) + 1))
        + "\n\nGrowth (MiB) in the first and the later messages:\n\n"
        + markdown_table(["process", f"messages 0-{STEP}", f"messages {STEP}-{messages}",
                          f"KiB per message (of all) after {STEP}"], summary(rows, STEP))
    )
    if not args.quick:
        write_section("memory", "Resident memory over many messages", "make bench-memory",
                      f"RSS from /proc (psutil) before the first message and after every {STEP}; "
                      "sequential short messages, so every one starts and ends its stream.",
                      body, {"rows": rows})
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
