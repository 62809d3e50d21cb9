"""The gateway as shipped (its CLI, auth on) as a process, for the real clients to call.

`gateway_proc(worker_urls, *extra_args)` starts `python -m orpheus_tts gateway` on a free
port with an API key file and waits until it is ready; `.url`, `.ws_url`, `.key`, `.log()`.
`fake_stack(*gateway_args, **fake_server_kwargs)` is one in front of one fake worker
(`.worker`).
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from orpheus_tts.up import free_port


@dataclass
class GatewayProc:
    proc: subprocess.Popen
    url: str
    key: str
    log_path: Path
    worker: Any = None  # the fake worker behind it, for `fake_stack`

    @property
    def ws_url(self) -> str:
        return "ws" + self.url[len("http"):]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def system(self) -> dict:
        return httpx.get(self.url + "/v1/system", timeout=5,
                         headers={"Authorization": f"Bearer {self.key}"}).json()


@pytest.fixture
def gateway_proc(tmp_path: Path) -> Iterator[Callable[..., GatewayProc]]:
    started: list[GatewayProc] = []

    def start(worker_urls: list[str], *extra_args: str) -> GatewayProc:
        key = "sk-" + secrets.token_urlsafe(16)
        keys = tmp_path / f"keys-{len(started)}"
        keys.write_text(key + "\n")
        port = free_port()
        log_path = tmp_path / f"gateway-{len(started)}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "orpheus_tts", "gateway", "--port", str(port),
                 "--workers", ",".join(worker_urls), "--api-keys-file", str(keys), *extra_args],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        gw = GatewayProc(proc, f"http://127.0.0.1:{port}", key, log_path)
        started.append(gw)
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"gateway exited:\n{gw.log()}"
            try:
                system = gw.system()
                if system.get("ready") and system.get("voices"):
                    return gw
            except (httpx.HTTPError, ValueError):
                pass
            assert time.monotonic() < deadline, f"gateway not ready:\n{gw.log()}"
            time.sleep(0.1)

    yield start
    for gw in started:
        gw.proc.send_signal(signal.SIGTERM)
    for gw in started:
        try:
            gw.proc.wait(15)
        except subprocess.TimeoutExpired:
            gw.proc.kill()
            gw.proc.wait(5)


@pytest.fixture
def fake_stack(fake_server, gateway_proc) -> Callable[..., GatewayProc]:
    def make(*gateway_args: str, **fake_kwargs: Any) -> GatewayProc:
        srv = fake_server(**fake_kwargs)
        gw = gateway_proc([srv.url], *gateway_args)
        gw.worker = srv
        return gw
    return make


def assert_clean_log(gw: GatewayProc) -> None:
    """Ordinary client behaviour leaves no traceback in the gateway's log."""
    assert "Traceback" not in gw.log(), gw.log()
