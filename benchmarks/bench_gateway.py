"""Gateway overhead: the same fast fake workers reached directly, through the gateway, and through
nginx as a plain reverse proxy, at 1, 64 and 256 concurrent streams, in one run.

Two fake v1 workers run as separate processes (`python -m tests.support.fake_server`), each
stream a fixed schedule: the first chunk after FIRST_DELAY_MS, then one every CHUNK_DELAY_MS.
A client in this process (httpx, asyncio) opens the streams and timestamps every chunk line as
it arrives. Per chunk, *lateness* is its arrival time minus its scheduled send time, so what a
proxy adds shows up directly; time to first audio (TTFA) is the first chunk's arrival.
"Added" is the path's percentile minus the direct path's at the same concurrency. CPU is the
proxy's processes' user+system seconds (psutil) over the level, divided by the stream-seconds
served (the sum of every stream's duration).

Paths: the workers directly, the gateway as before (`--no-auth`, no limits), the gateway as it
ships (API keys, the default rate limit and per-key stream cap; the client spreads its streams
over 16 keys), nginx, and the Python floor (`floor_proxy.py`: the gateway's server and client
libraries relaying bytes and doing nothing else, so the table tells what the stack costs from
what the gateway does). A level runs in rounds of `level` concurrent streams; each round runs
every path in turn, so a slow moment of the shared machine hits all paths alike. Levels with 3
or more rounds also report each path's per-round TTFA p50, added TTFA p50 (against the direct
path of the same round) and CPU, as min / median / max.

Connections: the client's pool (level + 8 connections) is shared by the paths, so a path's round
finds the pool full of the previous path's idle connections and opens a new one for each of its
streams: every path is measured with one new connection per stream. (Separate warm pools were
tried; httpx then slows the client itself down, and every path, the direct one too, gets
several times later.)

Run: `make bench-gateway` (or `.venv/bin/python benchmarks/bench_gateway.py [--quick]`).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.report import write_section  # noqa: E402
from orpheus_tts.protocol import STREAM_PATH, SYSTEM_PATH  # noqa: E402
from orpheus_tts.up import Child, free_port, spawn, stop_children  # noqa: E402

CHUNKS = 10
CHUNK_SAMPLES = 2400  # 100 ms of audio per chunk
CHUNK_DELAY_MS = 100.0  # a real-time stream: one chunk of 100 ms every 100 ms
FIRST_DELAY_MS = 50.0
LEVELS = (1, 64, 256)
ROUNDS = {1: 20, 64: 5, 256: 3}  # streams per level = level x rounds
AUTH_KEYS = [f"bench-key-{i:02d}-0123456789" for i in range(16)]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return values[k]


@dataclass
class LevelResult:
    path: str
    streams: int
    ttfa_ms: list[float] = field(default_factory=list)
    lateness_ms: list[float] = field(default_factory=list)
    stream_s: float = 0.0
    errors: int = 0
    error_kinds: Counter = field(default_factory=Counter)
    proxy_cpu_s: float = 0.0
    worker_cpu_s: float = 0.0
    wall_s: float = 0.0
    rounds: list[dict] = field(default_factory=list)  # per round: ttfa_p50_ms, cpu_per_stream_s

    def summary(self) -> dict:
        return {
            "path": self.path, "streams": self.streams, "errors": self.errors, "rounds": self.rounds,
            "error_kinds": dict(self.error_kinds),
            "ttfa_p50_ms": pct(self.ttfa_ms, 50), "ttfa_p99_ms": pct(self.ttfa_ms, 99),
            "chunk_late_p50_ms": pct(self.lateness_ms, 50),
            "chunk_late_p99_ms": pct(self.lateness_ms, 99),
            "stream_s": self.stream_s, "proxy_cpu_s": self.proxy_cpu_s,
            "worker_cpu_s": self.worker_cpu_s, "wall_s": self.wall_s,
            "proxy_cpu_per_stream_s": (self.proxy_cpu_s / self.stream_s) if self.stream_s else None,
        }


# --- processes -------------------------------------------------------------------------------
def wait_http(url: str, timeout_s: float = 60.0, children: list[Child] = ()) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        for c in children:
            if not c.alive():
                raise RuntimeError(f"{c.name} exited:\n{c.log_tail()}")
        try:
            if httpx.get(url + SYSTEM_PATH, timeout=2, trust_env=False).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not come up")
        time.sleep(0.2)


def start_fake_workers(n: int, log_dir: Path) -> list[Child]:
    out = []
    for i in range(n):
        port = free_port()
        out.append(spawn(f"fake-{i}", f"http://127.0.0.1:{port}", [
            sys.executable, "-m", "tests.support.fake_server", "--port", str(port),
            "--chunks", str(CHUNKS), "--chunk-samples", str(CHUNK_SAMPLES),
            "--chunk-delay-ms", str(CHUNK_DELAY_MS), "--first-delay-ms", str(FIRST_DELAY_MS),
            "--worker-id", f"fake-{i}"], log_dir, env={"PYTHONPATH": str(ROOT)}))
    for c in out:
        wait_http(c.url, children=[c])
    return out


def start_gateway(worker_urls: list[str], log_dir: Path, *, shipped: bool) -> Child:
    """`shipped`: keys, the default rate limit and stream cap; else `--no-auth`, no limits."""
    port = free_port()
    args = [sys.executable, "-m", "orpheus_tts", "gateway", "--port", str(port),
            "--workers", ",".join(worker_urls)]
    if shipped:
        keys = log_dir / "api-keys"
        keys.write_text("\n".join(AUTH_KEYS) + "\n")
        args += ["--api-keys-file", str(keys)]
    else:
        args += ["--no-auth", "--rate-limit-rpm", "0", "--max-streams-per-key", "0"]
    # The gateway of this tree, whatever else is installed.
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "gateway")])}
    child = spawn("gateway+auth" if shipped else "gateway", f"http://127.0.0.1:{port}", args,
                  log_dir, env=env)
    wait_http(child.url, children=[child])
    return child


def start_floor(worker_urls: list[str], log_dir: Path) -> Child:
    """The Python floor: `floor_proxy.py` in front of the same workers."""
    port = free_port()
    child = spawn("floor-proxy", f"http://127.0.0.1:{port}",
                  [sys.executable, str(ROOT / "benchmarks" / "floor_proxy.py"), str(port),
                   ",".join(worker_urls)], log_dir)
    wait_http(child.url, children=[child])
    return child


def ensure_nginx() -> str | None:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists()
                                      else None)
    if found or os.geteuid() != 0:
        return found
    subprocess.run(["apt-get", "install", "-y", "-qq", "nginx"], check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    return shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists()
                                     else None)


NGINX_CONF = """\
{user}
worker_processes 1;
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  upstream workers {{
{servers}
    keepalive 512;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://workers;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_read_timeout 300s;
    }}
  }}
}}
"""


def start_nginx(nginx: str, worker_urls: list[str], log_dir: Path) -> Child:
    tmp = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
    port = free_port()
    servers = "\n".join(f"    server {u.removeprefix('http://')};" for u in worker_urls)
    user = "user root;" if os.geteuid() == 0 else ""
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(user=user, tmp=tmp, servers=servers, port=port))
    child = spawn("nginx", f"http://127.0.0.1:{port}", [nginx, "-p", str(tmp), "-c", str(conf)],
                  log_dir)
    wait_http(child.url, children=[child])
    return child


def tree_cpu(children: list[Child]) -> float:
    total = 0.0
    for c in children:
        try:
            procs = [psutil.Process(c.proc.pid)]
            procs += procs[0].children(recursive=True)
        except psutil.NoSuchProcess:
            continue
        for p in procs:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
    return total


# --- the client ------------------------------------------------------------------------------
async def one_stream(client: httpx.AsyncClient, url: str, i: int, res: LevelResult,
                     auth: bool) -> None:
    body = {"text": f"benchmark stream {i}", "timeout_s": 120}
    headers = {"Authorization": f"Bearer {AUTH_KEYS[i % len(AUTH_KEYS)]}"} if auth else {}
    t0 = time.perf_counter()
    seq = 0
    failure = None
    try:
        async with client.stream("POST", url + STREAM_PATH, json=body, headers=headers) as r:
            if r.status_code != 200:
                failure = f"HTTP {r.status_code}"
                return
            failure = "no terminal frame"
            async for line in r.aiter_lines():
                if line.startswith('{"type":"chunk"'):
                    at_ms = (time.perf_counter() - t0) * 1000
                    if seq == 0:
                        res.ttfa_ms.append(at_ms)
                    res.lateness_ms.append(at_ms - FIRST_DELAY_MS - seq * CHUNK_DELAY_MS)
                    seq += 1
                elif '"type":"eos"' in line:
                    failure = None if seq == CHUNKS else f"eos after {seq}/{CHUNKS} chunks"
                elif '"type":"error"' in line:
                    failure = json.loads(line).get("code", "error frame")
    except httpx.HTTPError as exc:
        failure = type(exc).__name__
    finally:
        if failure is not None:
            res.errors += 1
            res.error_kinds[failure] += 1
        res.stream_s += time.perf_counter() - t0


@dataclass
class BenchPath:
    name: str
    urls: list[str]
    proxy: list[Child]
    auth: bool = False


async def run_level(paths: list[BenchPath], level: int, workers: list[Child]) -> list[LevelResult]:
    """`ROUNDS[level]` rounds of `level` concurrent streams; every path in each round."""
    results = {path.name: LevelResult(path.name, level * ROUNDS[level]) for path in paths}
    limits = httpx.Limits(max_connections=level + 8, max_keepalive_connections=level + 8)
    timeout = httpx.Timeout(120.0, connect=30.0, pool=120.0)
    async with httpx.AsyncClient(limits=limits, timeout=timeout, trust_env=False) as client:
        # first requests of each path out of the way (imports, caches); the round's streams
        # still open their own connections (see the module docstring)
        for path in paths:
            await asyncio.gather(*(client.get(path.urls[i % len(path.urls)] + SYSTEM_PATH)
                                   for i in range(min(level, 16))))
        n = 0
        for _ in range(ROUNDS[level]):
            for path in paths:
                res = results[path.name]
                one = LevelResult(path.name, level)
                cpu0, wcpu0, t0 = tree_cpu(path.proxy), tree_cpu(workers), time.perf_counter()
                await asyncio.gather(*(one_stream(client, path.urls[(n + k) % len(path.urls)],
                                                  n + k, one, path.auth)
                                       for k in range(level)))
                one.wall_s = time.perf_counter() - t0
                one.proxy_cpu_s = tree_cpu(path.proxy) - cpu0
                one.worker_cpu_s = tree_cpu(workers) - wcpu0
                res.ttfa_ms += one.ttfa_ms
                res.lateness_ms += one.lateness_ms
                res.errors += one.errors
                res.error_kinds += one.error_kinds
                for attr in ("stream_s", "proxy_cpu_s", "worker_cpu_s", "wall_s"):
                    setattr(res, attr, getattr(res, attr) + getattr(one, attr))
                res.rounds.append({"ttfa_p50_ms": pct(one.ttfa_ms, 50),
                                   "cpu_per_stream_s": (one.proxy_cpu_s / one.stream_s
                                                        if one.stream_s else None)})
            n += level
    return list(results.values())


def spread(values: list[float | None], scale: float = 1.0, digits: int = 1) -> str:
    values = [v * scale for v in values if v is not None and v == v]
    if not values:
        return "–"
    return " / ".join(fmt(v, digits) for v in (min(values), statistics.median(values),
                                               max(values)))


def round_table(results: list[dict]) -> str:
    """Per-round spreads (min / median / max) for the levels run in 3 or more rounds."""
    by = {(r["streams_concurrent"], r["path"]): r for r in results}
    lines = ["| concurrent | path | rounds | TTFA p50 (ms) | added TTFA p50 (ms) | "
             "CPU ms per stream-s | CPU ÷ nginx |",
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        level, rounds = r["streams_concurrent"], r["rounds"]
        if len(rounds) < 3 or level < 2 or r["path"] == "direct":
            continue
        direct = by[(level, "direct")]["rounds"]
        nginx = by.get((level, "nginx"), {}).get("rounds")
        added = [a["ttfa_p50_ms"] - d["ttfa_p50_ms"] for a, d in zip(rounds, direct)]
        cpu = [a["cpu_per_stream_s"] for a in rounds]
        ratio = ([a / b for a, b in zip(cpu, (x["cpu_per_stream_s"] for x in nginx))
                  if a is not None and b] if nginx and r["path"] != "nginx" else [])
        lines.append(f"| {level} | {r['path']} | {len(rounds)} | "
                     f"{spread([a['ttfa_p50_ms'] for a in rounds])} | {spread(added)} | "
                     f"{spread(cpu, 1000, 2)} | "
                     + (" / ".join(f"{v:.1f}×" for v in (min(ratio), statistics.median(ratio),
                                                          max(ratio))) if ratio else "–")
                     + " |")
    return "\n".join(lines)


def fmt(v: float | None, digits: int = 1) -> str:
    if v is None or v != v:
        return "–"
    return f"{v:.{digits}f}"


def error_kinds(r: dict) -> str:
    kinds = r.get("error_kinds") or {}
    return " (" + ", ".join(f"{k} ×{n}" for k, n in sorted(kinds.items())) + ")" if kinds else ""


def table(results: list[dict]) -> str:
    direct = {r["streams_concurrent"]: r for r in results if r["path"] == "direct"}
    lines = [
        "| concurrent | path | TTFA p50 / p99 (ms) | added TTFA p50 / p99 (ms) | chunk lateness "
        "p50 / p99 (ms) | added per chunk p50 / p99 (ms) | proxy CPU ms per stream-s | "
        "errors |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        d = direct[r["streams_concurrent"]]
        added = r["path"] != "direct"
        lines.append(
            f"| {r['streams_concurrent']} | {r['path']} | {fmt(r['ttfa_p50_ms'])} / "
            f"{fmt(r['ttfa_p99_ms'])} | "
            + (f"{fmt(r['ttfa_p50_ms'] - d['ttfa_p50_ms'])} / "
               f"{fmt(r['ttfa_p99_ms'] - d['ttfa_p99_ms'])}" if added else "–")
            + f" | {fmt(r['chunk_late_p50_ms'])} / {fmt(r['chunk_late_p99_ms'])} | "
            + (f"{fmt(r['chunk_late_p50_ms'] - d['chunk_late_p50_ms'])} / "
               f"{fmt(r['chunk_late_p99_ms'] - d['chunk_late_p99_ms'])}" if added else "–")
            + f" | {fmt(1000 * (r['proxy_cpu_per_stream_s'] or 0), 2) if added else '–'} | "
              f"{r['errors']}/{r['streams']}{error_kinds(r)} |")
    return "\n".join(lines)


def ratios(results: list[dict]) -> str:
    out = ["| concurrent (path) | ÷ nginx: added TTFA p50 | added chunk p99 | CPU per stream-s |",
           "| ---: | ---: | ---: | ---: |"]
    by = {(r["streams_concurrent"], r["path"]): r for r in results}
    for level in sorted({r["streams_concurrent"] for r in results}):
        n, d = by.get((level, "nginx")), by[(level, "direct")]
        for name in ("gateway", "gateway+auth", "python floor"):
            g = by.get((level, name))
            if not g or not n:
                continue

            def ratio(a: float, b: float) -> str:
                return f"{a / b:.1f}×" if b and b > 0 and a == a and b == b else "–"

            out.append(
                f"| {level} ({name}) | "
                f"{ratio(g['ttfa_p50_ms'] - d['ttfa_p50_ms'], n['ttfa_p50_ms'] - d['ttfa_p50_ms'])}"
                f" | {ratio(g['chunk_late_p99_ms'] - d['chunk_late_p99_ms'], n['chunk_late_p99_ms'] - d['chunk_late_p99_ms'])}"
                f" | {ratio(g['proxy_cpu_per_stream_s'] or 0, n['proxy_cpu_per_stream_s'] or 0)} |")
    return "\n".join(out)


async def bench(levels: tuple[int, ...], log_dir: Path) -> list[dict]:
    children: list[Child] = []
    try:
        workers = start_fake_workers(2, log_dir)
        children += workers
        worker_urls = [w.url for w in workers]
        gateway = start_gateway(worker_urls, log_dir, shipped=False)
        shipped = start_gateway(worker_urls, log_dir, shipped=True)
        children += [gateway, shipped]
        paths = [BenchPath("direct", worker_urls, []), BenchPath("gateway", [gateway.url], [gateway]),
                 BenchPath("gateway+auth", [shipped.url], [shipped], auth=True)]
        nginx = ensure_nginx()
        if nginx:
            ng = start_nginx(nginx, worker_urls, log_dir)
            children.append(ng)
            paths.append(BenchPath("nginx", [ng.url], [ng]))
        else:
            print("nginx not found and not installable: its rows are left out", file=sys.stderr)
        floor = start_floor(worker_urls, log_dir)
        children.append(floor)
        paths.append(BenchPath("python floor", [floor.url], [floor]))
        results = []
        for level in levels:
            for res in await run_level(paths, level, workers):
                summary = {**res.summary(), "streams_concurrent": level}
                results.append(summary)
                print(f"{level:>4} {res.path:<12} ttfa p50 {fmt(summary['ttfa_p50_ms'])} p99 "
                      f"{fmt(summary['ttfa_p99_ms'])}  late p50 "
                      f"{fmt(summary['chunk_late_p50_ms'])} p99 "
                      f"{fmt(summary['chunk_late_p99_ms'])}  cpu/stream-s "
                      f"{fmt(summary['proxy_cpu_per_stream_s'], 4)}  errors {res.errors}"
                      f"{error_kinds(summary)}",
                      flush=True)
        return results
    finally:
        stop_children(children)


def load_line(load: dict | None) -> str:
    """The machine's load average (1/5/15 min) before and after the run, as measured."""
    if not load:
        return ""
    before, after = (" / ".join(f"{x:.2f}" for x in load[k]) for k in ("before", "after"))
    return f"\n\nLoad average (1 / 5 / 15 min): {before} before the run, {after} after."


def event_loop() -> str:
    """The event loop uvicorn gives the gateway here (`loop="auto"`: uvloop when installed)."""
    if importlib.util.find_spec("uvloop") is not None:
        return "The gateway ran on uvloop, as in its image."
    return ("The gateway ran on asyncio's own event loop: this environment lacks uvloop, which "
            "the gateway image installs with `uvicorn[standard]`.")


def report(results: list[dict], levels: tuple[int, ...], note: str,
           load: dict | None = None) -> str:
    return (
        f"Fake workers: 2 processes, each stream {CHUNKS} chunks of {CHUNK_SAMPLES} samples "
        f"({CHUNK_SAMPLES / 24:.0f} ms of audio), first after {FIRST_DELAY_MS:.0f} ms, then one "
        f"every {CHUNK_DELAY_MS:.0f} ms. Streams per level: "
        + ", ".join(f"{lv}×{ROUNDS[lv]}" for lv in levels) + ".\n\n"
        + table(results) + "\n\nRatios, same run:\n\n" + ratios(results) + "\n\n"
        "Per round (min / median / max over the rounds; added and ÷ nginx against the same "
        "round's direct and nginx rows):\n\n" + round_table(results) + "\n\n"
        "Everything (client, gateway or nginx, both fake workers) shares the machine's cores, so "
        "at 256 streams the client itself is part of what is measured; compare rows, not "
        "absolute numbers. " + event_loop() + load_line(load) + (f"\n\n{note}" if note else "")
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="levels 1 and 16 only; no doc update")
    ap.add_argument("--note", default="", help="a sentence for the doc section (e.g. that the "
                    "machine was shared with other work during the run)")
    ap.add_argument("--render", metavar="JSON", help="no run: rewrite the doc section from a "
                    "saved docs/benchmarks/gateway.json (after a change to the tables)")
    args = ap.parse_args(argv)
    levels = (1, 16) if args.quick else LEVELS
    if args.quick:
        ROUNDS[16] = 3
        ROUNDS[1] = 5
    if args.render:
        saved = json.loads(Path(args.render).read_text())["results"]
        results, load = saved["results"], saved.get("load")
    else:
        log_dir = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
        before = os.getloadavg()
        results = asyncio.run(bench(levels, log_dir))
        load = {"before": before, "after": os.getloadavg()}
    body = report(results, levels, args.note, load)
    if not args.quick:
        write_section(
            "gateway", "Gateway overhead vs direct and nginx",
            "make bench-gateway",
            "added latency = path percentile minus the direct path's at the same concurrency; "
            "chunk lateness = arrival minus scheduled send; CPU = proxy process tree "
            "user+system time / stream-seconds (psutil), in ms of CPU per second of stream.",
            body, {"results": results, "load": load})
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
