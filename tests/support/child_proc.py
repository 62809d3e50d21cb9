"""Two things every test that runs a server as a child process needs: wait until one of its
URLs answers 200 (failing with its log if it exits first or the time runs out), and stop its
whole process group, gracefully first."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable

import httpx


def wait_http_ok(url: str, process: subprocess.Popen, log: Callable[[], str], what: str,
                 timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{log()[-4000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop_group(process)
    raise RuntimeError(f"{what} not answering {url} within {timeout}s:\n{log()[-4000:]}")


def stop_group(process: subprocess.Popen | None, grace: float = 15.0) -> None:
    """SIGTERM the process group, SIGKILL it after `grace` seconds; idempotent."""
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
    except ProcessLookupError:
        pass
