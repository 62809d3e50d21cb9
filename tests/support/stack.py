"""A real local stack for tests: a gateway process in front of two real worker processes.

The fixture `local_stack` (session scope) is what `orpheus-tts up` runs, on free loopback
ports, with its API key in a temp file: a gateway started by the same code
(`orpheus_tts.up.LocalStack.start_gateway`) in front of the session's two stand-in workers
(`worker_pair` from `tests/support/worker_proc.py`, shared with the other suites, so a test
session never holds more engines than it needs). The battery, browser and examples suites
share it. Helpers on the returned `TestStack`:

- `url`, `api_key`, `headers()`, `worker_urls`, `workers` (`Child` views of the worker
  processes: `.name` is `worker-<id>`, `.url`, `.proc`, `.signal_group()`);
- `system(url)`: a `/v1/system` snapshot (dict) of the gateway or a worker;
- `worker_load()` / `wait_idle()`: every worker's `(inflight, engine_requests)`;
- `restart_worker(child)`: after a test killed or drained a worker, a fresh one with the same
  id on the same port, swapped into the shared `worker_pair` entry so later suites see it live;
- `start_gateway(worker_urls, extra_args, name)`: one more gateway (for example behind chaos
  proxies); `remove(child)` stops one; all are stopped with the stack.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from pathlib import Path

import httpx
import pytest

from orpheus_tts.protocol import SYSTEM_PATH
from orpheus_tts.up import STAND_IN_GATEWAY_ARGS, Child, LocalStack, StackConfig, free_port


class TestStack(LocalStack):
    __test__ = False  # not a test class

    def __init__(self, config: StackConfig, model_dir: Path, worker_procs: list):
        super().__init__(config, log=lambda _msg: None)
        self.model_dir = model_dir
        self.worker_procs = worker_procs  # worker_proc.WorkerProcess, shared with other suites

    @property
    def workers(self) -> list[Child]:
        return [Child(f"worker-{self._worker_id(wp)}", wp.url, wp.proc, wp.log_path)
                for wp in self.worker_procs]

    @staticmethod
    def _worker_id(wp) -> str:
        args = wp.proc.args
        return args[args.index("--worker-id") + 1] if "--worker-id" in args else wp.url

    def start_with_workers(self) -> "TestStack":
        """The gateway in front of the (already running) workers."""
        self.key_file = self.config.key_file
        self.api_key = "sk-test-" + secrets.token_urlsafe(18)
        assert self.key_file is not None
        self.key_file.write_text(self.api_key + "\n")
        gateway = self.start_gateway(self.worker_urls, port=self.config.port)
        try:
            self.wait_ready([gateway], 120)
        except BaseException:
            self.stop()
            raise
        return self

    def system(self, url: str | None = None) -> dict:
        r = httpx.get((url or self.url) + SYSTEM_PATH, headers=self.headers(), timeout=10,
                      trust_env=False)
        r.raise_for_status()
        return r.json()

    def worker_load(self) -> dict[str, tuple[int, int]]:
        """worker name -> (inflight, engine_requests) as each worker reports it."""
        out = {}
        for child in self.workers:
            snap = self.system(child.url)
            out[child.name] = (int(snap.get("inflight", 0)),
                               int(snap.get("engine_requests", 0) or 0))
        return out

    def wait_idle(self, timeout_s: float = 30.0) -> dict[str, tuple[int, int]]:
        """Wait until no worker has a stream or an engine request; returns the last reading."""
        deadline = time.monotonic() + timeout_s
        while True:
            with contextlib.suppress(httpx.HTTPError):
                load = self.worker_load()
                if all(v == (0, 0) for v in load.values()):
                    return load
            if time.monotonic() > deadline:
                return self.worker_load()
            time.sleep(0.1)

    def restart_worker(self, child: Child) -> Child:
        """A fresh worker with the same id on the same port, in place of a dead or drained one."""
        from tests.support.worker_proc import start_worker

        wp = next(w for w in self.worker_procs if w.url == child.url)
        if wp.proc.poll() is None:
            wp.stop(timeout=30)
        else:
            wp.kill()  # reap its process group and close its log
        port = int(child.url.rsplit(":", 1)[1])
        fresh = start_worker(self.model_dir, port=port,
                             extra_args=("--worker-id", self._worker_id(wp)))
        wp.__dict__.update(fresh.__dict__)  # the shared worker_pair entry is live again
        return next(c for c in self.workers if c.url == child.url)


@pytest.fixture(scope="session")
def local_stack(worker_pair, tiny_model, tmp_path_factory) -> TestStack:
    tmp = tmp_path_factory.mktemp("stack")
    config = StackConfig(port=free_port(), key_file=tmp / "local.key", log_dir=tmp / "logs",
                         gateway_args=list(STAND_IN_GATEWAY_ARGS))
    stack = TestStack(config, Path(tiny_model), worker_pair).start_with_workers()
    try:
        yield stack
    finally:
        stack.stop()
