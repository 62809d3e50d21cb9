"""A real local stack for tests: a gateway and two workers as processes on free loopback ports.

The fixture `local_stack` (session scope) starts what `orpheus-tts up` starts, with the same
code (`orpheus_tts.up.LocalStack`), on free ports, with its API key in a temp file; the battery,
browser and examples suites share it. Helpers on the returned `TestStack`:

- `url`, `api_key`, `headers()`, `worker_urls`, `workers` (the `Child` processes);
- `system(url)`: a `/v1/system` snapshot (dict) of the gateway or a worker;
- `wait_idle()`: until every worker reports `inflight == 0` (and `engine_requests == 0`);
- `restart_worker(child)`: a fresh worker on the same port (after a test killed one);
- `start_gateway(worker_urls, extra_args)`: one more gateway (for example behind chaos proxies),
  stopped with the stack.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import httpx
import pytest

from orpheus_tts.protocol import SYSTEM_PATH
from orpheus_tts.up import (STAND_IN_WORKER_ARGS, Child, LocalStack, StackConfig, cache_dir,
                            ensure_tiny_model, free_port)

# The stand-in checkpoint, kept on audio tokens; extra worker flags from the environment.
STACK_WORKER_ARGS = [*STAND_IN_WORKER_ARGS,
                     *os.environ.get("ORPHEUS_TEST_WORKER_ARGS", "").split()]


class TestStack(LocalStack):
    __test__ = False  # not a test class

    def __init__(self, config: StackConfig, llm: str, snac: str):
        super().__init__(config, log=lambda _msg: None)
        self.llm, self.snac = llm, snac

    def start(self) -> "TestStack":
        super().start()
        return self

    def system(self, url: str | None = None) -> dict:
        r = httpx.get((url or self.url) + SYSTEM_PATH, headers=self.headers(), timeout=10,
                      trust_env=False)
        r.raise_for_status()
        return r.json()

    def worker_load(self) -> dict[str, tuple[int, int]]:
        """worker id -> (inflight, engine_requests) as each worker reports it."""
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
            load = self.worker_load()
            if all(v == (0, 0) for v in load.values()) or time.monotonic() > deadline:
                return load
            time.sleep(0.1)

    def restart_worker(self, child: Child) -> Child:
        """Replace a (killed or stopped) worker by a fresh one on the same port and id."""
        port = int(child.url.rsplit(":", 1)[1])
        worker_id = child.name.removeprefix("worker-")
        self.remove(child)
        fresh = self.start_worker(worker_id, self.llm, self.snac, port=port)
        self.wait_ready([fresh])
        return fresh


def start_test_stack(tmp: Path, llm: str, snac: str, workers: int = 2,
                     worker_args: list[str] | None = None) -> TestStack:
    config = StackConfig(port=free_port(), workers=workers, model=llm, snac=snac,
                         key_file=tmp / "local.key", log_dir=tmp / "logs",
                         worker_args=worker_args if worker_args is not None else STACK_WORKER_ARGS,
                         ready_timeout_s=420.0)
    return TestStack(config, llm, snac).start()


def stand_in_model(request: pytest.FixtureRequest) -> tuple[str, str]:
    """The stand-in checkpoint: the worker suite's `tiny_model` fixture when there is one."""
    with contextlib.suppress(pytest.FixtureLookupError):
        model = request.getfixturevalue("tiny_model")
        root = Path(getattr(model, "root", model))
        if (root / "llm").exists():
            return str(root / "llm"), str(root / "snac")
    llm, snac = ensure_tiny_model(cache_dir() / "tiny-model", log=lambda _m: None)
    return str(llm), str(snac)


@pytest.fixture(scope="session")
def local_stack(request, tmp_path_factory) -> TestStack:
    llm, snac = stand_in_model(request)
    stack = start_test_stack(tmp_path_factory.mktemp("stack"), llm, snac)
    try:
        yield stack
    finally:
        stack.stop()
