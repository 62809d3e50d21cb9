"""`make bench-gpu` at its tiny size on CPU, so the benchmark cannot rot between GPU runs.

torch.compile runs with the `eager` backend here (dynamo's graph capture without inductor's
minutes of CPU code generation); the full run uses inductor.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from benchmarks.bench_gpu import FRAMES_PER_S, steady_window_frames
from orpheus_worker.snac_stream import DEFAULT_LEFT_CONTEXT, DEFAULT_RIGHT_CONTEXT, StreamingDecoder

ROOT = Path(__file__).resolve().parents[2]


def test_the_window_is_the_workers_keeping_up_window():
    frames = steady_window_frames()
    stream = StreamingDecoder(DEFAULT_RIGHT_CONTEXT, DEFAULT_LEFT_CONTEXT)
    stream.push([[0] * 7] * 30)
    window = stream.plan()
    stream.accept(window, [0.0] * (window.frames * 2048))
    stream.push([[0] * 7])  # one new frame: the steady state
    step = stream.plan()
    assert step.frames == frames and step.emit_to - step.emit_from == 2048


def test_tiny_run_on_cpu(tmp_path):
    out = tmp_path / "bench.json"
    subprocess.run([sys.executable, "benchmarks/bench_gpu.py", "--tiny", "--device", "cpu",
                    "--compile-backend", "eager", "--no-write", "--json", str(out)],
                   cwd=ROOT, check=True, timeout=600)
    result = json.loads(out.read_text())
    rows = {(r["mode"], r["dtype"]): r for r in result["rows"]}
    assert set(rows) == {(m, d) for m in ("eager", "compile", "cudagraphs")
                         for d in ("float32", "bfloat16")}
    for dtype in ("float32", "bfloat16"):
        assert rows[("cudagraphs", dtype)]["status"] == "n/a: needs CUDA"
    measured = [r for r in result["rows"] if r["mode"] != "cudagraphs"]
    for r in measured:
        assert r["status"] == "ok" and r["batch"] == 2
        assert r["step_ms_median"] > 0
        assert math.isclose(r["frames_per_s"], 2 / (r["step_ms_median"] / 1000))
    assert rows[("eager", "float32")]["snr_db"] == math.inf  # the reference itself
    assert rows[("compile", "float32")]["snr_db"] > 60
    for mode in ("eager", "compile"):
        assert 25 < rows[(mode, "bfloat16")]["snr_db"] < 80
    streams = result["realtime_streams"]["eager/float32"]
    assert streams["streams"] == int(rows[("eager", "float32")]["frames_per_s"] // FRAMES_PER_S)
