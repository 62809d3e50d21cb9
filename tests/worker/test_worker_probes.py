"""The worker's probe endpoints on a real worker process (vLLM on CPU + SNAC, stand-in model).

What the operator's pod template relies on: `/startupz` fails until the engine and SNAC are
loaded (so `startupSeconds` bounds a load, and a hung one is restarted), `/livez` fails once
the vLLM engine process died (so the kubelet restarts the pod instead of leaving it NotReady
forever), and `/readyz` follows admission.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.worker_proc import ROOT, TINY_WORKER_ARGS, WORKER_ENV, WorkerProcess

pytestmark = [pytest.mark.engine, pytest.mark.timeout(900)]

_LISTENING = re.compile(r"orpheus-worker ready: (http://\S+)")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _status(url: str) -> tuple[int, str] | None:
    try:
        r = httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return None
    return r.status_code, r.json().get("status")


def test_startup_waits_for_the_model_and_liveness_fails_when_the_engine_dies(tiny_model: Path
                                                                          ) -> None:
    port = _free_port()
    fd, name = tempfile.mkstemp(prefix="orpheus-worker-probes-", suffix=".log")
    log_file = os.fdopen(fd, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "orpheus_worker", "--model", str(tiny_model / "llm"),
         "--snac", str(tiny_model / "snac"), "--host", "127.0.0.1", "--port", str(port),
         *TINY_WORKER_ARGS],
        cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True, env={**os.environ, **WORKER_ENV})
    worker = WorkerProcess(proc, Path(name), log_file)
    base = f"http://127.0.0.1:{port}"
    try:
        # The HTTP server binds before the engine loads: the probes answer at once.
        deadline = time.monotonic() + 120
        first = None
        while first is None:
            assert proc.poll() is None, worker.log()[-3000:]
            assert time.monotonic() < deadline, worker.log()[-3000:]
            first = _status(base + "/startupz")
            time.sleep(0.05)
        loading = [first, _status(base + "/readyz"), _status(base + "/livez")]
        assert not _LISTENING.search(worker.log()), "loaded before the first probe"
        assert loading == [(503, "loading"), (503, "loading"), (200, "alive")]

        deadline = time.monotonic() + 600
        while not _LISTENING.search(worker.log()):
            assert proc.poll() is None, worker.log()[-3000:]
            assert time.monotonic() < deadline, worker.log()[-3000:]
            # Until the model is loaded, startup never passes.
            started = _status(base + "/startupz")
            if started != (200, "started"):
                assert started in ((503, "loading"), None)
            time.sleep(0.2)
        assert _status(base + "/startupz") == (200, "started")
        assert _status(base + "/livez") == (200, "alive")
        assert _status(base + "/readyz") == (200, "ready")

        # Kill vLLM's engine core process (a crashed engine, an OOM kill): the worker process
        # lives on, and liveness must say it is dead.
        engines = [c for c in psutil.Process(proc.pid).children(recursive=True)
                   if c.pid != proc.pid]
        assert engines, "vLLM runs no engine process"
        for child in engines:
            child.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 60
        while _status(base + "/livez") != (503, "engine_dead"):
            assert proc.poll() is None, worker.log()[-3000:]
            assert time.monotonic() < deadline, (_status(base + "/livez"), worker.log()[-3000:])
            time.sleep(0.2)
        assert _status(base + "/readyz") == (503, "engine_dead")
    finally:
        worker.kill()
