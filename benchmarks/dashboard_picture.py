"""`make dashboard-picture`: the dashboard's panels with data from the stand-in stack.

Starts what `orpheus-tts up` starts (a gateway and two CPU workers on the stand-in checkpoint,
each worker admitting 2 streams with 1 queued so that bursts are refused), and a real
Prometheus (Debian's `prometheus` server, scraping the gateway and both workers every 2 s).
It drives a load through the SDK — a trickle, a burst over capacity, a trickle — then asks
Prometheus for every panel's queries over that time (`query_range`, exactly the dashboard's
PromQL with `$__rate_interval` set to 20 s) and draws the panels in the dashboard's layout with
matplotlib into docs/img/dashboard.png. The operator is not part of the local stack, so its
panels' operator series are empty (the picture says so).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "operator"), str(ROOT / "gateway"), str(ROOT / "worker")]

from orpheus_operator.dashboard import PANELS, RATE, PanelSpec  # noqa: E402
from orpheus_tts.sdk import OrpheusTTS  # noqa: E402
from orpheus_tts.up import LocalStack, StackConfig, free_port  # noqa: E402

OUT = ROOT / "docs" / "img" / "dashboard.png"
SCRAPE_S = 2
RATE_WINDOW = "20s"
WORKER_ARGS = ["--max-streams", "2", "--max-queue", "1"]
TEXT = "Operators watch this."


def prometheus_config(gateway: str, workers: list[str]) -> str:
    def target(url: str) -> str:
        return url.split("://", 1)[1]

    workers_list = ", ".join(f'"{target(u)}"' for u in workers)
    return (f"global:\n  scrape_interval: {SCRAPE_S}s\n  evaluation_interval: {SCRAPE_S}s\n"
            "scrape_configs:\n"
            f"  - job_name: gateway\n    static_configs:\n      - targets: [\"{target(gateway)}\"]\n"
            f"  - job_name: worker\n    static_configs:\n      - targets: [{workers_list}]\n")


class Prometheus:
    """Debian's prometheus server on a free port with its data in a temp dir."""

    def __init__(self, config: str, workdir: Path):
        binary = shutil.which("prometheus")
        if not binary:
            raise SystemExit("prometheus is missing: run scripts/install-prometheus.sh")
        (workdir / "prometheus.yml").write_text(config)
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = (workdir / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={workdir / 'prometheus.yml'}",
             f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address={self.url.split('://')[1]}"],
            stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/-/ready", timeout=2).status_code == 200:
                    return
            time.sleep(0.5)
        raise RuntimeError("prometheus did not become ready")

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict]:
        r = httpx.get(self.url + "/api/v1/query_range", timeout=30, params={
            "query": expr, "start": start, "end": end, "step": step})
        r.raise_for_status()
        return r.json()["data"]["result"]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()


async def drive(url: str, key: str, phases: list[tuple[float, int]]) -> dict[str, int]:
    """Each phase: (seconds, concurrent clients), each client streaming back to back."""
    outcome: dict[str, int] = {}
    async with OrpheusTTS([url], api_key=key, hedge_ttfb_ms=None, timeout_s=120) as tts:
        async def client(until: float) -> None:
            while time.monotonic() < until:
                try:
                    async for _ in tts.stream(TEXT, voice="tara"):
                        pass
                    outcome["ok"] = outcome.get("ok", 0) + 1
                except Exception as exc:  # noqa: BLE001 - refusals are part of the picture
                    name = getattr(exc, "code", None) or type(exc).__name__
                    outcome[name] = outcome.get(name, 0) + 1
                    await asyncio.sleep(0.5)

        for seconds, clients in phases:
            until = time.monotonic() + seconds
            await asyncio.gather(*(client(until) for _ in range(clients)))
    return outcome


def legend(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template).strip()


def draw(panels: list[tuple[str, PanelSpec, list[tuple[str, list]]]], start: float,
         out: Path, note: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 3
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(18, 3.3 * rows), squeeze=False)
    for ax, (row_title, spec, series) in zip(axes.flat, panels):
        ax.set_title(f"{row_title} · {spec.title}", fontsize=10, loc="left")
        drawn = 0
        for name, values in series:
            if not values:
                continue
            xs = [(float(t) - start) / 60 for t, _ in values]
            ys = [float(v) for _, v in values]
            ax.step(xs, ys, where="post", label=name, linewidth=1.2) if spec.kind == "state" \
                else ax.plot(xs, ys, label=name, linewidth=1.2)
            drawn += 1
        if spec.kind == "state":
            ax.set_yticks([0, 1, 2], ["closed", "half-open", "open"])
            ax.set_ylim(-0.3, 2.3)
        if drawn:
            ax.legend(fontsize=7, loc="upper left")
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes,
                    color="grey")
        missing = [name for name, values in series if not values]
        if missing and drawn:
            ax.text(0.99, 0.02, "no data: " + ", ".join(missing), ha="right", va="bottom",
                    transform=ax.transAxes, fontsize=6, color="grey")
        ax.set_xlabel("minutes", fontsize=8)
        ax.tick_params(labelsize=7)
        if spec.unit == "s":
            ax.set_ylabel("seconds", fontsize=8)
        elif spec.unit == "reqps":
            ax.set_ylabel("per second", fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle("Orpheus TTS dashboard: " + note, fontsize=11)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trickle-s", type=float, default=50)
    ap.add_argument("--burst-s", type=float, default=70)
    ap.add_argument("--burst-clients", type=int, default=10)
    ap.add_argument("-o", "--output", default=str(OUT))
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="orpheus-dashboard-"))
    stack = LocalStack(StackConfig(port=free_port(), key_file=tmp / "key", log_dir=tmp / "logs",
                                   worker_args=WORKER_ARGS))
    prom = None
    try:
        print("starting the stand-in stack ...", flush=True)
        stack.start()
        prom = Prometheus(prometheus_config(stack.url, stack.worker_urls), tmp)
        prom.wait_ready()
        time.sleep(3 * SCRAPE_S)
        start = time.time()
        phases = [(args.trickle_s, 1), (args.burst_s, args.burst_clients), (args.trickle_s, 1)]
        print(f"load: {phases} (seconds, clients) ...", flush=True)
        outcome = asyncio.run(drive(stack.url, stack.api_key or "", phases))
        time.sleep(4 * SCRAPE_S)
        end = time.time()
        print("streams:", outcome, flush=True)
        panels = []
        for row in PANELS:
            for spec in row.panels:
                series = []
                for q in spec.queries:
                    result = prom.query_range(q.expr.replace(RATE, RATE_WINDOW), start, end,
                                              SCRAPE_S)
                    if not result:
                        series.append((legend(q.legend, {}), []))
                    for s in result:
                        series.append((legend(q.legend, s["metric"]), s["values"]))
                panels.append((row.title, spec, series))
        note = (f"stand-in stack (gateway + 2 CPU workers, 2 streams + 1 queued each) scraped by "
                f"a real Prometheus every {SCRAPE_S}s; load: 1 client, {args.burst_clients} "
                f"clients, 1 client; streams {outcome}; no operator runs locally")
        draw(panels, start, Path(args.output), note)
        print(f"wrote {args.output}")
    finally:
        if prom is not None:
            prom.stop()
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
