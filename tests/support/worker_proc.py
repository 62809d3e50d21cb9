"""Real worker processes for tests (a pytest plugin, loaded by tests/conftest.py).

Stable API, used by the worker, gateway, battery and local-stack suites:

- `ensure_tiny_model(root=None, voices="english") -> Path`: the stand-in checkpoint
  (`root/llm`, `root/snac`), generated once by `orpheus-tts make-tiny-model` and cached under
  `~/.cache/orpheus-tts/tiny-model-v<GENERATOR_VERSION>` (override: `ORPHEUS_TINY_MODEL_DIR`);
  `voices="arabic"`: the Arabic-Saudi stand-in, in `tiny-model-arabic-v<GENERATOR_VERSION>`.
- fixture `tiny_model` (session): that directory.
- `start_worker(model_dir, *, port=None, extra_args=(), env=None, timeout=420) -> WorkerProcess`:
  runs `python -m orpheus_worker` on the checkpoint in `model_dir` (the root holding `llm/` and
  `snac/`), waits until it printed its ready line and `/readyz` answers 200, and returns it.
  `port=None` lets the worker pick a free port. `extra_args` are appended to
  `TINY_WORKER_ARGS` (later flags win); `env` is merged over `WORKER_ENV`.
- `WorkerProcess`: `.url`, `.proc`, `.log_path`, `.log()` (its output so far),
  `.stop(sig=signal.SIGTERM, timeout=60) -> int` (graceful: drain then exit; kills the process
  group if the timeout passes; idempotent) and `.kill()` (SIGKILL to the whole process group,
  like a crashed pod; idempotent).
- `await wait_draining(client, worker_url, timeout_s=30)`: until `/readyz` answers 503, the
  moment a worker sent SIGTERM refuses new streams (the signal is handled asynchronously).
- fixture `worker_pair` (session): two running workers (`w-a`, `w-b`) on the stand-in model,
  started once per test session and stopped at its end.

Startup takes about 30 s on an idle 2-core machine and over 200 s under heavy load; fixture
setup counts toward pytest-timeout's limit, so suites that start workers should mark their
engine tests `@pytest.mark.timeout(900)` (as tests/worker does).

CPU sharing: `WORKER_ENV` keeps each worker on one OpenMP thread with no core binding and a
1 GiB KV cache, so two or three workers and the tests fit on a 2-core machine.
`TINY_WORKER_ARGS` constrain sampling to audio tokens (random weights never pick the stop
token) and size default utterances small: `min-audio-s 0.5`, `audio-s-per-char 0.02`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest

from orpheus_tts.up import WORKER_NICE, lower_cpu_priority

ROOT = Path(__file__).resolve().parents[2]

WORKER_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "VLLM_LOGGING_LEVEL": "WARNING",
    "VLLM_NO_USAGE_STATS": "1",
    "HF_HUB_OFFLINE": "1",
    "PYTHONUNBUFFERED": "1",
}

TINY_WORKER_ARGS: tuple[str, ...] = (
    "--constrain-to-audio-tokens",
    "--max-model-len", "2048",
    "--max-num-seqs", "4",
    "--min-audio-s", "0.5",
    "--audio-s-per-char", "0.02",
    "--drain-seconds", "30",
)

_READY = re.compile(r"orpheus-worker ready: (http://\S+)")
_LOCK = threading.Lock()


def _generator_version() -> int:
    from orpheus_worker.tiny_model import GENERATOR_VERSION

    return GENERATOR_VERSION


def ensure_tiny_model(root: str | Path | None = None, voices: str = "english") -> Path:
    """The stand-in checkpoint, generated on first use (atomic: safe across processes)."""
    if root is None and voices != "english":
        root = Path.home() / ".cache" / "orpheus-tts" / f"tiny-model-{voices}-v{_generator_version()}"
    if root is None:
        root = os.environ.get("ORPHEUS_TINY_MODEL_DIR") or (
            Path.home() / ".cache" / "orpheus-tts" / f"tiny-model-v{_generator_version()}")
    root = Path(root)
    with _LOCK:
        if (root / "VERSION").exists():
            return root
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=root.name + ".", dir=root.parent))
        try:
            subprocess.run([sys.executable, "-m", "orpheus_worker.tiny_model", str(tmp),
                            "--voices", voices],
                           check=True, cwd=ROOT, env={**os.environ, **WORKER_ENV},
                           stdout=subprocess.DEVNULL, timeout=600)
            try:
                tmp.rename(root)
            except OSError:  # another process won the race
                if not (root / "VERSION").exists():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return root


class WorkerProcess:
    def __init__(self, proc: subprocess.Popen, log_path: Path, log_file):
        self.proc = proc
        self.log_path = log_path
        self._log_file = log_file
        self.url: str = ""

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def _close_log(self) -> None:
        with contextlib.suppress(Exception):
            self._log_file.close()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Ask the worker to drain and exit; kill its process group after `timeout`."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.proc.wait(timeout=30)
        # vLLM's engine processes leave with their parent; make sure of it.
        self._signal_group(signal.SIGKILL)
        self._close_log()
        return self.proc.returncode

    def kill(self) -> None:
        self._signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=30)
        self._close_log()


async def wait_draining(client: httpx.AsyncClient, worker_url: str, timeout_s: float = 30
                        ) -> None:
    deadline = time.monotonic() + timeout_s
    while (await client.get(worker_url + "/readyz")).status_code != 503:
        assert time.monotonic() < deadline, f"{worker_url} not draining after {timeout_s} s"
        await asyncio.sleep(0.05)


def start_worker(model_dir: str | Path, *, port: int | None = None,
                 extra_args: Sequence[str] = (), env: dict[str, str] | None = None,
                 timeout: float = 420) -> WorkerProcess:
    model_dir = Path(model_dir)
    args = [
        sys.executable, "-m", "orpheus_worker",
        "--model", str(model_dir / "llm"), "--snac", str(model_dir / "snac"),
        "--host", "127.0.0.1", "--port", str(port or 0),
        *TINY_WORKER_ARGS, *extra_args,
    ]
    fd, name = tempfile.mkstemp(prefix="orpheus-worker-", suffix=".log")
    log_file = os.fdopen(fd, "wb")
    proc = subprocess.Popen(args, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, **WORKER_ENV, **(env or {})})
    lower_cpu_priority(proc.pid, WORKER_NICE)  # as `orpheus-tts up` runs its workers
    worker = WorkerProcess(proc, Path(name), log_file)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited with {proc.returncode}:\n{worker.log()[-4000:]}")
            match = _READY.search(worker.log())
            if match:
                worker.url = match.group(1)
                if httpx.get(worker.url + "/readyz", timeout=5).status_code == 200:
                    return worker
            time.sleep(0.25)
        raise TimeoutError(f"worker not ready after {timeout} s:\n{worker.log()[-4000:]}")
    except BaseException:
        worker.kill()
        raise


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    return ensure_tiny_model()


@pytest.fixture(scope="session")
def worker_pair(tiny_model: Path) -> Iterator[list[WorkerProcess]]:
    """Two workers on the stand-in model for the whole test session."""
    results: dict[str, WorkerProcess | BaseException] = {}

    def boot(worker_id: str) -> None:
        try:
            results[worker_id] = start_worker(tiny_model, extra_args=("--worker-id", worker_id))
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            results[worker_id] = exc

    threads = [threading.Thread(target=boot, args=(wid,)) for wid in ("w-a", "w-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    workers = [r for r in results.values() if isinstance(r, WorkerProcess)]
    errors = [r for r in results.values() if not isinstance(r, WorkerProcess)]
    if errors:
        for w in workers:
            w.kill()
        raise errors[0]
    try:
        yield [results["w-a"], results["w-b"]]  # type: ignore[list-item]
    finally:
        for w in workers:
            w.stop(timeout=30)
