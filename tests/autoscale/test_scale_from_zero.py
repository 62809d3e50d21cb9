"""Scale from zero end to end on real processes: a real gateway (auth on) with no worker stays
Ready and holds a request; a real worker process (vLLM on CPU, the stand-in model) appears at
the address the gateway was given; the held request is served, with exactly one `eos`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from orpheus_tts import protocol as p
from tests.support.child_proc import stop_group, wait_http_ok
from tests.support.worker_proc import start_worker

pytestmark = [pytest.mark.engine, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
KEY, SYSTEM_KEY = "user-key-0123456789", "system-key-abcdef012345"
DEADLINE_S = 600  # longer than a worker's cold start on a loaded 2-core machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_held_request_is_served_by_the_worker_that_appears(tiny_model: Path,
                                                              tmp_path: Path) -> None:
    worker_port, port = free_port(), free_port()
    (tmp_path / "keys").write_text(KEY + "\n")
    (tmp_path / "system-keys").write_text(SYSTEM_KEY + "\n")
    log = tmp_path / "gateway.log"
    with log.open("wb") as out:
        gateway = subprocess.Popen(
            [sys.executable, "-m", "orpheus_tts", "gateway", "--port", str(port),
             "--workers", f"http://127.0.0.1:{worker_port}",
             "--api-keys-file", str(tmp_path / "keys"),
             "--system-keys-file", str(tmp_path / "system-keys"),
             "--max-pending", "1", "--max-timeout-s", str(DEADLINE_S + 60)],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={k: v for k, v in os.environ.items() if k != "ORPHEUS_API_KEYS"})
    url = f"http://127.0.0.1:{port}"
    worker = None
    try:
        # Ready with no worker at all: its readiness is its own.
        wait_http_ok(url + "/readyz", gateway, log.read_text, "gateway", 30)

        result: dict = {}

        def call() -> None:
            try:
                result["r"] = httpx.post(
                    url + p.STREAM_PATH, json={"text": "Hello from zero.", "timeout_s": DEADLINE_S},
                    headers={"Authorization": f"Bearer {KEY}"}, timeout=DEADLINE_S + 30)
            except httpx.HTTPError as exc:
                result["error"] = repr(exc)

        caller = threading.Thread(target=call, daemon=True)
        caller.start()
        system = {"Authorization": f"Bearer {SYSTEM_KEY}"}

        def pending() -> int:
            return httpx.get(url + p.SYSTEM_PATH, headers=system, timeout=5).json()["queue_depth"]

        deadline = time.monotonic() + 30
        while pending() != 1:
            assert time.monotonic() < deadline and caller.is_alive(), result
            time.sleep(0.1)
        # The pending limit (1) is reached: the next caller is told to come back.
        refused = httpx.post(url + p.STREAM_PATH, json={"text": "me too", "timeout_s": 5},
                             headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == p.ErrorCode.OVERLOADED
        assert int(refused.headers[p.HEADER_RETRY_AFTER]) >= 1

        worker = start_worker(tiny_model, port=worker_port,
                              extra_args=("--max-timeout-s", str(DEADLINE_S + 60)))
        caller.join(DEADLINE_S)
        assert "r" in result, result
        response = result["r"]
        assert response.status_code == 200, response.text
        frames = [p.decode_frame(line.encode()) for line in response.text.splitlines()]
        types = [f.type for f in frames if f is not None]
        assert types.count("eos") == 1 and types[-1] == "eos", types
        assert types.count("chunk") >= 1
        assert pending() == 0
    finally:
        if worker is not None:
            worker.stop(timeout=30)
        stop_group(gateway)
