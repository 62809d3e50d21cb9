"""The gateway as an outsider meets it: a real `orpheus-tts gateway` process (the shipped
command line, auth on, default limits) in front of fake workers on loopback, its whole log
in a file the tests read afterwards.

Fixture `hostile_gateway(*extra_args, workers=2, worker_kwargs=None, keys=None)` starts one
and returns a `GatewayProcess`: `url`, `ws_url`, `key` (and `keys`), `key_file`, `workers`
(the `FakeServer`s), `headers(key)`, `log()` and `wait_log(substring)`.
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orpheus_tts.protocol import SYSTEM_PATH
from orpheus_tts.up import free_port, spawn


class GatewayProcess:
    def __init__(self, proc: subprocess.Popen, log_path: Path, port: int, keys: list[str],
                 key_file: Path, workers: list):
        self.proc = proc
        self.log_path = log_path
        self.port = port
        self.keys = keys
        self.key_file = key_file
        self.workers = workers

    @property
    def key(self) -> str:
        return self.keys[0]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, needle: str, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while needle not in self.log():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2, trust_env=False) as client:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"gateway exited {self.proc.returncode}:\n{self.log()}")
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    snap = client.get(self.url + SYSTEM_PATH, headers=self.headers()).json()
                    if snap.get("ready") and snap.get("voices"):
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"gateway not ready:\n{self.log()}")
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def assert_clean_log(text: str) -> None:
    """Ordinary hostile traffic leaves no ERROR line and no traceback."""
    bad = [line for line in text.splitlines()
           if " ERROR " in line or line.startswith("ERROR") or "Traceback" in line]
    assert not bad, "\n".join(bad[:20])


@pytest.fixture
def hostile_gateway(fake_server, tmp_path) -> Iterator[Callable[..., GatewayProcess]]:
    started: list[GatewayProcess] = []

    def make(*extra_args: str, workers: int = 2, worker_kwargs: dict[str, Any] | None = None,
             keys: list[str] | None = None) -> GatewayProcess:
        fakes = [fake_server(**(worker_kwargs or {})) for _ in range(workers)]
        # Keys with characters that change under URL, base64 and JSON encodings.
        keys = keys or [f"sk-{secrets.token_urlsafe(16)}_+/=~{i}" for i in range(2)]
        key_file = tmp_path / f"keys-{len(started)}"
        key_file.write_text("\n".join(keys) + "\n")
        port = free_port()
        log_dir = tmp_path / f"gw-{len(started)}"
        log_dir.mkdir()
        argv = [sys.executable, "-m", "orpheus_tts", "gateway", "--host", "127.0.0.1",
                "--port", str(port), "--workers", ",".join(f.url for f in fakes),
                "--api-keys-file", str(key_file), *extra_args]
        child = spawn("gateway", f"http://127.0.0.1:{port}", argv, log_dir)
        gw = GatewayProcess(child.proc, child.log_path, port, keys, key_file, fakes)
        started.append(gw)
        gw.wait_ready()
        return gw

    yield make
    for gw in started:
        gw.stop()
