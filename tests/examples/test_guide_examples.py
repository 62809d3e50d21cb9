"""Every code example of the SDK guide runs unchanged (but for URL and key) against a local stack.

The examples live in `examples/guide_*.py`; each runs in its own process through
`tests/examples/harness.py`, which records what passed through the SDK, so the assertions are
about real audio that came back, not only about an exit code.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import wave
from pathlib import Path

import httpx
import pytest

from orpheus_tts.protocol import SAMPLE_RATE
from orpheus_tts.up import free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
STUBS = Path(__file__).resolve().parent / "stubs"

pytestmark = [pytest.mark.engine, pytest.mark.timeout(900)]  # incl. starting the engines


def _env(stack, **extra: str) -> dict[str, str]:
    env = {**os.environ, "ORPHEUS_URL": stack.url, "ORPHEUS_API_KEY": stack.api_key or "",
           "PYTHONPATH": str(ROOT), **extra}
    env.pop("HTTP_PROXY", None)
    env.pop("HTTPS_PROXY", None)
    return env


def _run(stack, name: str, tmp_path: Path, **env: str) -> dict:
    record = tmp_path / "record.json"
    proc = subprocess.run(
        [sys.executable, "-m", "tests.examples.harness", str(record), "run",
         str(EXAMPLES / name)],
        cwd=tmp_path, env=_env(stack, **env), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(record.read_text())


def _assert_streams_completed(record: dict, texts: list[str]) -> None:
    assert sorted(s["text"] for s in record["streams"]) == sorted(texts)
    for s in record["streams"]:
        assert s["completed"] and s["error"] is None, s
        assert s["bytes"] > 0 and s["bytes"] % 2 == 0, s
    assert record["closed"] == 1


def test_quickstart_writes_a_wav_of_all_the_streamed_audio(local_stack, tmp_path):
    record = _run(local_stack, "guide_quickstart.py", tmp_path)
    _assert_streams_completed(record, ["Hello world from Orpheus."])
    with wave.open(str(tmp_path / "hello.wav")) as wf:
        assert (wf.getnchannels(), wf.getsampwidth(), wf.getframerate()) == (1, 2, SAMPLE_RATE)
        assert wf.getnframes() * 2 == record["streams"][0]["bytes"]


def test_realtime_loop_plays_every_chunk_as_int16_at_24khz(local_stack, tmp_path):
    log = tmp_path / "sounddevice.jsonl"
    record = _run(local_stack, "guide_realtime.py", tmp_path,
                  PYTHONPATH=f"{STUBS}{os.pathsep}{ROOT}", SOUNDDEVICE_STUB_LOG=str(log))
    _assert_streams_completed(record, ["Streaming playback demo."])
    plays = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(plays) == record["streams"][0]["chunks"]
    assert all(p["call"] == "play" and p["dtype"] == "int16" and p["samplerate"] == SAMPLE_RATE
               and p["blocking"] is False for p in plays)
    assert sum(p["samples"] for p in plays) * 2 == record["streams"][0]["bytes"]


def test_concurrency_runs_four_streams_on_one_client(local_stack, tmp_path):
    record = _run(local_stack, "guide_concurrency.py", tmp_path)
    _assert_streams_completed(record, ["One", "Two", "Three", "Four"])


class _Served:
    """A guide FastAPI app served by uvicorn in its own process, through the harness."""

    def __init__(self, stack, name: str, tmp_path: Path, **env: str):
        self.port = free_port()
        self.record = tmp_path / "record.json"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.examples.harness", str(self.record), "serve",
             str(EXAMPLES / name), str(self.port)],
            cwd=tmp_path, env=_env(stack, **env), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, self.proc.stdout.read()[-3000:]
            try:
                httpx.get(self.url + "/docs", timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "example app did not start"
                time.sleep(0.2)

    def stop(self) -> dict:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return json.loads(self.record.read_text()) if self.record.exists() else {}


def test_fastapi_streaming_recipe_relays_the_audio(local_stack, tmp_path):
    served = _Served(local_stack, "guide_fastapi_stream.py", tmp_path)
    try:
        r = httpx.get(served.url + "/speak", params={"q": "Hello there."}, timeout=120)
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/octet-stream"
        assert len(r.content) > 0 and len(r.content) % 2 == 0
    finally:
        record = served.stop()
    _assert_streams_completed(record, ["Hello there."])
    assert record["streams"][0]["bytes"] == len(r.content)


def test_fastapi_app_skeleton_serves_a_wav(local_stack, tmp_path):
    served = _Served(local_stack, "guide_fastapi_app.py", tmp_path,
                     ORPHEUS_URLS=local_stack.url, ORPHEUS_KEY=local_stack.api_key or "")
    try:
        r = httpx.get(served.url + "/v1/tts.wav", params={"q": "Good morning."}, timeout=120)
        assert r.status_code == 200
        assert r.headers["content-type"] == "audio/wav"
        with wave.open(io.BytesIO(r.content)) as wf:
            assert (wf.getnchannels(), wf.getsampwidth(), wf.getframerate()) == (1, 2, SAMPLE_RATE)
            frames = wf.getnframes()
    finally:
        record = served.stop()
    _assert_streams_completed(record, ["Good morning."])
    assert frames * 2 == record["streams"][0]["bytes"] > 0
