"""`make bench-gpu`: the codec stage — SNAC 24 kHz decode throughput and per-step latency.

Every step decodes B windows the size the worker's sliding window has when a stream keeps up
(`StreamingDecoder` with the worker's default contexts, one new frame per step: each window
emits one frame, 2,048 samples), through the worker's own `SnacDecoder`: codes to the device,
SNAC's decode, PCM back to the host. For each batch size, decoder mode (eager,
`torch.compile`, CUDA graphs) and dtype (float32, bfloat16) it reports the median and p95 step
latency, frames emitted per second, and the SNR of the decoded windows against float32 eager
on the same codes. "Real-time streams per device for the codec stage" is the best, over the
batch sizes, of frames per second / 11.72 (a stream consumes 24,000 / 2,048 frames a second);
streams that fall behind decode longer windows, which cost less per frame, so it is a floor.

On CUDA it runs batch 1, 8, 32, 64 and 128; on CPU, 1 and 8 (CUDA graphs: n/a). `--tiny`
runs batch 2 once, for CI (tests/worker/test_bench_gpu.py). SNAC has the 24 kHz architecture with random weights
and its noise blocks off unless `--snac DIR` names real ones.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "worker"))

from benchmarks.report import machine, markdown_table, write_section  # noqa: E402
from orpheus_worker import tokens as T  # noqa: E402
from orpheus_worker.snac_stream import (  # noqa: E402
    SNAC_DTYPES, SNAC_MODES, SnacDecoder, StreamingDecoder, load_snac, strip_noise)

FRAMES_PER_S = 24_000 / T.SAMPLES_PER_FRAME  # one real-time stream consumes this many
GPU_BATCHES = (1, 8, 32, 64, 128)
CPU_BATCHES = (1, 8)
TINY_BATCHES = (2,)


def steady_window_frames(right_context: int | None = None, left_context: int | None = None
                         ) -> int:
    """Frames in a keeping-up stream's window: push one frame per step until it is steady."""
    kwargs = {k: v for k, v in (("right_context", right_context),
                                ("left_context", left_context)) if v is not None}
    stream = StreamingDecoder(**kwargs)
    sizes = []
    for _ in range(40):
        stream.push([[0] * T.FRAME_TOKENS])
        window = stream.plan()
        if window is not None:
            sizes.append(window.frames)
            stream.accept(window, np.zeros(window.frames * T.SAMPLES_PER_FRAME, np.float32))
    return sizes[-1]


def snr_db(ref: np.ndarray, got: np.ndarray) -> float:
    noise = float(np.sum((got.astype(np.float64) - ref) ** 2))
    if noise == 0.0:
        return float("inf")
    return float(10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / noise))


def random_snac(seed: int = 0) -> Any:
    """SNAC with hubertsiuzdak/snac_24khz's architecture and random weights, noise off."""
    import torch
    from snac import SNAC

    from orpheus_worker.tiny_model import SNAC_24KHZ_CONFIG

    torch.manual_seed(seed)
    model = SNAC(**SNAC_24KHZ_CONFIG).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return strip_noise(model)


def windows_for(batch: int, frames: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, T.CODEBOOK_SIZE, size=(frames, T.FRAME_TOKENS)) for _ in range(batch)]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def time_steps(decoder: SnacDecoder, windows: list[np.ndarray], steps: int, warmup: int
               ) -> tuple[np.ndarray, float, list[float]]:
    """(last output, first-call seconds, per-step seconds). The first call includes compiling
    or capturing for this shape."""
    sync(decoder.device)
    t = time.perf_counter()
    out = decoder.decode(windows)
    first = time.perf_counter() - t
    for _ in range(warmup):
        decoder.decode(windows)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        out = decoder.decode(windows)  # returns host PCM: the step is complete
        times.append(time.perf_counter() - t)
    return out, first, times


def run(device: str, batches: tuple[int, ...], modes: tuple[str, ...], dtypes: tuple[str, ...],
        steps: int, warmup: int, snac_dir: str | None = None,
        compile_backend: str = "inductor") -> dict:
    import torch

    base = (load_snac(snac_dir, disable_noise=True) if snac_dir else random_snac())
    frames = steady_window_frames()
    decoders: dict[tuple[str, str], SnacDecoder | None] = {}
    for mode in modes:
        for dtype in dtypes:
            if mode == "cudagraphs" and not device.startswith("cuda"):
                decoders[(mode, dtype)] = None  # n/a
                continue
            if mode == "compile":
                torch._dynamo.reset()
            decoders[(mode, dtype)] = SnacDecoder(copy.deepcopy(base).to(device), device,
                                                  mode=mode, dtype=dtype,
                                                  compile_backend=compile_backend)
    reference = SnacDecoder(copy.deepcopy(base).to(device), device)
    rows = []
    for batch in batches:
        windows = windows_for(batch, frames, seed=batch)
        ref = reference.decode(windows)
        for (mode, dtype), decoder in decoders.items():
            row: dict[str, Any] = {"batch": batch, "mode": mode, "dtype": dtype}
            if decoder is None:
                rows.append({**row, "status": "n/a: needs CUDA"})
                continue
            print(f"  batch {batch:>3} {mode:<10} {dtype:<8} ...", end="", flush=True)
            out, first, times = time_steps(decoder, windows, steps, warmup)
            median = statistics.median(times)
            p95 = float(np.percentile(times, 95))
            row.update(status="ok" if decoder.mode == mode else f"fell back to {decoder.mode}",
                       first_call_s=first, step_ms_median=median * 1000, step_ms_p95=p95 * 1000,
                       frames_per_s=batch / median, snr_db=snr_db(ref, out))
            print(f" {median * 1000:8.1f} ms/step  {batch / median:9.1f} frames/s  "
                  f"SNR {row['snr_db']:.1f} dB", flush=True)
            rows.append(row)
    return {"device": device, "device_name": device_name(device), "window_frames": frames,
            "steps": steps, "warmup": warmup, "snac": snac_dir or "random-weight 24 kHz",
            "torch": torch.__version__, "compile_backend": compile_backend, "rows": rows,
            "realtime_streams": realtime_streams(rows)}


def realtime_streams(rows: list[dict]) -> dict[str, dict]:
    """Per mode/dtype: the most real-time streams any batch size sustains, and that batch."""
    best: dict[str, dict] = {}
    for row in rows:
        if "frames_per_s" not in row:
            continue
        key = f"{row['mode']}/{row['dtype']}"
        streams = int(row["frames_per_s"] // FRAMES_PER_S)
        if key not in best or streams > best[key]["streams"]:
            best[key] = {"streams": streams, "batch": row["batch"]}
    return best


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    return machine()


def table(result: dict, gpu_column: str | None = None) -> str:
    """The results; `gpu_column`: a last column for a CPU run ("not run" until a GPU run)."""
    def fmt(value: float, spec: str) -> str:
        return "inf" if value == float("inf") else format(value, spec)

    rows = []
    for r in result["rows"]:
        if "frames_per_s" not in r:
            row = [r["batch"], r["mode"], r["dtype"], "n/a", "n/a", "n/a", "n/a", "n/a"]
        else:
            row = [r["batch"], r["mode"], r["dtype"], fmt(r["step_ms_median"], ".1f"),
                   fmt(r["step_ms_p95"], ".1f"), fmt(r["frames_per_s"], ".1f"),
                   fmt(r["snr_db"], ".1f"), fmt(r["first_call_s"], ".2f")]
        rows.append(row + ([gpu_column] if gpu_column else []))
    columns = ["batch", "mode", "dtype", "step ms (median)", "step ms (p95)", "frames/s",
               "SNR vs fp32 eager (dB)", "first call s"]
    return markdown_table(columns + (["GPU"] if gpu_column else []), rows,
                          "rllrrrrr" + ("l" if gpu_column else ""))


def streams_table(result: dict) -> str:
    rows = [[key, v["streams"], v["batch"]] for key, v in result["realtime_streams"].items()]
    return markdown_table(["mode/dtype", "real-time streams (codec stage)", "at batch"], rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    ap.add_argument("--batches", help="comma-separated batch sizes (default: by device)")
    ap.add_argument("--modes", default=",".join(SNAC_MODES))
    ap.add_argument("--dtypes", default=",".join(SNAC_DTYPES))
    ap.add_argument("--steps", type=int, help="timed steps per row (default 20 CUDA, 3 CPU)")
    ap.add_argument("--warmup", type=int, help="untimed steps after the first call")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--snac", help="a SNAC 24 kHz directory or hub id (default: random weights)")
    ap.add_argument("--compile-backend", default="inductor",
                    help="torch.compile backend (CI's tiny run uses 'eager': the graph capture "
                    "without inductor's minutes of CPU code generation)")
    ap.add_argument("--tiny", action="store_true", help="batch 2, one step: for CI")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--no-write", action="store_true", help="print, do not update docs")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    cuda = device.startswith("cuda")
    if args.batches:
        batches = tuple(int(b) for b in args.batches.split(","))
    else:
        batches = TINY_BATCHES if args.tiny else GPU_BATCHES if cuda else CPU_BATCHES
    steps = args.steps or (1 if args.tiny else 20 if cuda else 3)
    warmup = args.warmup if args.warmup is not None else (0 if args.tiny else 3 if cuda else 1)
    modes = tuple(m for m in args.modes.split(",") if m)
    dtypes = tuple(d for d in args.dtypes.split(",") if d)
    print(f"SNAC codec stage on {device}: batches {batches}, modes {modes}, dtypes {dtypes}",
          flush=True)
    result = run(device, batches, modes, dtypes, steps, warmup, args.snac, args.compile_backend)
    body = "\n\n".join([table(result), streams_table(result)])
    print(body)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n")
    if not args.no_write and not args.tiny:
        write_doc(result)
    return 0


def write_doc(result: dict) -> None:
    """One section per device kind: the CPU run never overwrites a GPU table or vice versa."""
    cuda = result["device"].startswith("cuda")
    name = "gpu-codec-cuda" if cuda else "gpu-codec-cpu"
    other = "CPU" if cuda else "GPU (CUDA)"
    title = ("Codec stage on a GPU: SNAC decode throughput" if cuda
             else "Codec stage on CPU: SNAC decode throughput (the GPU table's CPU run)")
    body = (
        f"Device: {result['device_name']}; torch {result['torch']}; SNAC: {result['snac']}; "
        f"window: {result['window_frames']} frames (a keeping-up stream's), one frame emitted "
        f"per window per step; {result['steps']} timed steps after {result['warmup']} warm-up "
        f"steps. \"first call\" includes compiling or capturing for that shape; torch.compile "
        f"reuses its on-disk cache, so a cold start compiles for much longer.\n\n"
        f"{table(result, None if cuda else 'not run')}\n\n{streams_table(result)}\n\n"
        f"The {other} table is written by the same command on that device."
    )
    if not cuda:
        body += (" **GPU: not run** — no GPU was lent to the task that wrote this section; run "
                 "`make bench-gpu` on a CUDA machine to add it.")
    write_section(
        name, title, "make bench-gpu",
        "benchmarks/bench_gpu.py: per step, the worker's SnacDecoder decodes B keeping-up "
        "windows (codes to device, SNAC decode, PCM to host); median and p95 of the timed "
        "steps; SNR of each mode/dtype against float32 eager on the same codes; real-time "
        "streams = best frames/s over the batch sizes / 11.72"
        + ("" if cuda else "; a 2-core VM shared with other work while it ran"),
        body, result)


if __name__ == "__main__":
    sys.exit(main())
