"""Helpers for the speech-API client tests: run a plan of calls in the clients' venv, decode."""

from __future__ import annotations

import io
import json
from pathlib import Path

import av

from tests.clients.venvs import run_driver


def speech_calls(client: str, base_url: str, key: str, calls: list[dict], tmp: Path) -> list[dict]:
    """Run `calls` through the real `client` ("openai" or "groq"); each result gets `body`."""
    plan = tmp / f"plan-{client}.json"
    out = tmp / f"out-{client}"
    out.mkdir(exist_ok=True)
    plan.write_text(json.dumps({"client": client, "base_url": base_url, "api_key": key,
                                "calls": calls}))
    done = run_driver("frameworks", "speech_calls.py", str(plan), str(out), timeout=180)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    for i, r in enumerate(results):
        path = out / f"{i}.bin"
        r["body"] = path.read_bytes() if path.exists() else b""
        r["headers"] = {k.lower(): v for k, v in r.get("headers", {}).items()}
    return results


def decode(data: bytes, fmt: str, rate: int = 24_000) -> tuple[int, int]:
    """(samples, sample rate) of encoded audio; raw `pcm`/`mulaw` are read with `rate`."""
    if fmt == "pcm":
        return len(data) // 2, rate
    options = {"sample_rate": str(rate)} if fmt == "mulaw" else {}
    with av.open(io.BytesIO(data), format="mulaw" if fmt == "mulaw" else None,
                 options=options) as container:
        frames = list(container.decode(audio=0))
    return sum(f.samples for f in frames), frames[0].sample_rate
