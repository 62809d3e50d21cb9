"""`examples/sdk_*.py` run unchanged against fake servers and do what they print."""

from __future__ import annotations

import os
import subprocess
import sys
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_sdk_cluster_example_hedges_to_the_fast_endpoint(fake_server, tmp_path):
    slow = fake_server(first_delay_ms=3000, tone=1000)
    fast = fake_server(chunks=4, tone=2000)
    out = tmp_path / "cluster.wav"
    env = {**os.environ, "ORPHEUS_URLS": f"{slow.url},{fast.url}", "ORPHEUS_API_KEY": "k",
           "ORPHEUS_OUT": str(out)}
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "sdk_cluster.py")],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"from {fast.url}" in proc.stdout and "hedged: True" in proc.stdout
    with wave.open(str(out)) as wf:
        assert wf.readframes(10**6) == fast.expected_pcm(4)
    assert fast.stream_requests[0].headers["authorization"] == "Bearer k"
