"""Run the real operator (`orpheus-tts operator`) as a child process, for control-plane tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.child_proc import stop_group, wait_http_ok

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OperatorProcess:
    """`orpheus-tts operator` under a given kubeconfig; `stop()` always ends the whole group."""

    def __init__(self, kubeconfig: Path, log_path: Path, resync_seconds: float = 2.0,
                 extra_args: list[str] | None = None):
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.resync_seconds = resync_seconds
        self.extra_args = extra_args or ["--standalone"]
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.metrics_port = 0
        self.starts = 0

    def start(self, timeout: float = 60.0) -> None:
        assert self.process is None, "already running"
        self.port = _free_port()
        self.metrics_port = _free_port()
        argv = [sys.executable, "-m", "orpheus_tts.cli", "operator",
                f"--kubeconfig={self.kubeconfig}",
                f"--liveness=http://127.0.0.1:{self.port}/healthz",
                f"--metrics=127.0.0.1:{self.metrics_port}",
                f"--resync-seconds={self.resync_seconds}", *self.extra_args]
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PYTHONUNBUFFERED": "1"}
        self.starts += 1
        log = self.log_path.open("ab")
        log.write(f"\n===== start #{self.starts}: {' '.join(argv)}\n".encode())
        log.flush()
        self.process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        wait_http_ok(f"http://127.0.0.1:{self.port}/healthz", self.process, self.log_tail,
                     "operator", timeout)

    def metrics(self) -> str:
        """The operator's Prometheus exposition (`--metrics`)."""
        return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text

    def stop(self, grace: float = 15.0) -> None:
        process, self.process = self.process, None
        stop_group(process, grace)

    def restart(self) -> None:
        self.stop()
        self.start()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])
