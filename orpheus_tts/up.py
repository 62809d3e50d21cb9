"""`orpheus-tts up`: a gateway and two CPU workers on this machine, in one command.

`--pools english,arabic` starts one gateway over a model pool per stand-in instead (an English
and an Arabic-Saudi stand-in checkpoint, `--workers` each, one by default), under the names
Canopy and Groq give those models (`STAND_IN_POOLS`).

What `make run` runs. On a fresh machine it writes the stand-in checkpoint into a cache dir
(once), starts the workers and the gateway as child processes, waits until they are ready, and
prints the URL, the API key and the next command to try. Ctrl-C (or SIGTERM) stops every process
it started: each child leads its own process group (a worker's engine processes included), and
stopping signals the whole group, then kills what is left.

`LocalStack` is the reusable part: `tests/support/stack.py` starts the same stack on free ports.
`local_api_key()` is how `orpheus-tts say` finds the key of a local stack.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .protocol import SYSTEM_PATH

DEFAULT_PORT = 8000
DEFAULT_SNAC = "hubertsiuzdak/snac_24khz"
URL_ENV = "ORPHEUS_URL"
KEY_ENV = "ORPHEUS_API_KEY"
READY_TIMEOUT_S = 600.0
# Random weights rarely sample audio tokens in the right places: keep the stand-in on audio.
STAND_IN_WORKER_ARGS = ["--constrain-to-audio-tokens"]
# The stand-in runs slower than real time on CPU (docs/benchmarks.md): a guide-sized request
# (max_tokens=1536) needs about a minute, so the local gateway's default deadline is longer.
STAND_IN_GATEWAY_ARGS = ["--default-timeout-s", "180"]
STOP_GRACE_S = 10.0
# `--pools`: pool name -> (the model's public name, the stand-in's voice set).
STAND_IN_POOLS = {
    "english": ("canopylabs/orpheus-3b-0.1-ft", "english"),
    "arabic": ("canopylabs/orpheus-arabic-saudi", "arabic"),
}
# Workers are bulk compute and vLLM-CPU's executor busy-waits between steps; on a shared machine
# the gateway's control path (a `cancel` acknowledged within 100 ms) must not queue behind them.
WORKER_NICE = 10


# --- where things live -----------------------------------------------------------------------
def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "orpheus-tts"


def cache_dir() -> Path:
    if os.environ.get("ORPHEUS_CACHE_DIR"):
        return Path(os.environ["ORPHEUS_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "orpheus-tts"


def local_key_file() -> Path:
    return config_dir() / "local.key"


def local_api_key(environ: dict[str, str] | None = None) -> str | None:
    """The key for a local stack: `$ORPHEUS_API_KEY`, else the key `orpheus-tts up` saved."""
    env = os.environ if environ is None else environ
    if env.get(KEY_ENV):
        return env[KEY_ENV]
    try:
        key = local_key_file().read_text().strip()
    except OSError:
        return None
    return key.splitlines()[0].strip() if key else None


def ensure_local_key(path: Path | None = None) -> str:
    """Reuse the saved local key, or generate one and save it (mode 600)."""
    path = path or local_key_file()
    with contextlib.suppress(OSError):
        key = path.read_text().strip()
        if key:
            return key.splitlines()[0].strip()
    key = "sk-local-" + secrets.token_urlsafe(24)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key


def ensure_tiny_model(directory: Path, log=print, voices: str = "english") -> tuple[Path, Path]:
    """The stand-in checkpoint (`DIR/llm`, `DIR/snac`), generated once into `directory`."""
    llm, snac = directory / "llm", directory / "snac"
    if not (llm / "config.json").exists() or not (snac / "config.json").exists():
        log(f"writing the {voices} stand-in checkpoint to {directory} (once) ...")
        subprocess.run([sys.executable, "-m", "orpheus_tts", "make-tiny-model", str(directory),
                        "--voices", voices], check=True)
    return llm, snac


def stand_in_dir(model_cache: Path, pool: str) -> Path:
    """Where pool `pool`'s stand-in lives: the English one is the usual `tiny-model`."""
    return model_cache if pool == "english" else model_cache.with_name(
        f"{model_cache.name}-{pool}")


def pools_document(pool_workers: dict[str, list[str]]) -> dict:
    """The gateway's `--pools-file` for the stand-in pools (the first is the default)."""
    from orpheus_worker.voices import load_voice_set

    pools = []
    for name, urls in pool_workers.items():
        model, voices = STAND_IN_POOLS[name]
        aliases = load_voice_set(voices).aliases if voices != "english" else {}
        pools.append({"name": name, "model": model, "workers": urls,
                      **({"voice_aliases": aliases} if aliases else {})})
    return {"default_pool": next(iter(pool_workers)), "pools": pools}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


# --- child processes -------------------------------------------------------------------------
def die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the parent dies (Linux), even by SIGKILL."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def lower_cpu_priority(pid: int, nice: int) -> None:
    """Let `pid`, and every process later started in its session, yield the CPU to others:
    `nice` more than it has (at most 19).

    Best effort. Linux orders processes by niceness only within one scheduler autogroup, and
    each session (`start_new_session=True`) is an autogroup of its own, so the session's
    autogroup is given the same niceness; on a kernel without autogroups the process's own
    niceness does the work. Processes started later in the session inherit both.
    """
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, pid, min(19, os.getpriority(os.PRIO_PROCESS, pid) + nice))
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/autogroup").write_text(f"{min(19, nice)}\n")


@dataclass
class Child:
    """One started process: the leader of its own process group."""

    name: str
    url: str
    proc: subprocess.Popen
    log_path: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def spawn(name: str, url: str, argv: list[str], log_dir: Path,
          env: dict[str, str] | None = None, nice: int = 0) -> Child:
    log_path = log_dir / f"{name}.log"
    log = open(log_path, "ab")
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
            # PDEATHSIG follows the spawning *thread*: only tie children to the main thread.
            preexec_fn=die_with_parent if threading.current_thread() is threading.main_thread()
            else None,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    finally:
        log.close()
    if nice:
        lower_cpu_priority(proc.pid, nice)
    return Child(name, url, proc, log_path)


def stop_children(children: list[Child], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM every group, wait up to `grace_s`, SIGKILL the groups. Idempotent."""
    for child in children:
        child.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.proc.wait(max(0.0, deadline - time.monotonic()))
    # Group members (a worker's engine processes) may outlive their leader: kill the group.
    for child in children:
        child.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.proc.wait(5)


class StackError(RuntimeError):
    pass


@dataclass
class StackConfig:
    port: int = DEFAULT_PORT
    host: str = "127.0.0.1"
    workers: int = 2
    model: str | None = None  # None: the stand-in checkpoint
    snac: str | None = None
    model_cache: Path | None = None  # where the stand-in checkpoint lives
    key_file: Path | None = None  # None: ~/.config/orpheus-tts/local.key
    no_auth: bool = False
    log_dir: Path | None = None
    worker_args: list[str] = field(default_factory=list)
    gateway_args: list[str] = field(default_factory=list)
    ready_timeout_s: float = READY_TIMEOUT_S
    worker_nice: int = WORKER_NICE
    pools: list[str] = field(default_factory=list)  # STAND_IN_POOLS names; [] = one model


class LocalStack:
    """Workers plus a gateway as child processes; `stop()` is idempotent and leaves nothing."""

    def __init__(self, config: StackConfig, log=print):
        self.config = config
        self.log = log
        self.children: list[Child] = []
        self.api_key: str | None = None
        self.key_file: Path | None = None
        self.log_dir = config.log_dir or Path(tempfile.mkdtemp(prefix="orpheus-up-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.config.port}"

    @property
    def workers(self) -> list[Child]:
        return [c for c in self.children if c.name.startswith("worker")]

    @property
    def gateway(self) -> Child | None:
        return next((c for c in self.children if c.name == "gateway"), None)

    @property
    def worker_urls(self) -> list[str]:
        return [c.url for c in self.workers]

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    # -- starting ------------------------------------------------------------------------------
    def start(self) -> "LocalStack":
        cfg = self.config
        if port_in_use(cfg.port, cfg.host):
            raise StackError(f"port {cfg.port} is in use; pick another with --port")
        checkpoints = self._checkpoints()
        if not cfg.no_auth:
            self.key_file = cfg.key_file or local_key_file()
            self.api_key = ensure_local_key(self.key_file)
        try:
            pool_workers: dict[str, list[str]] = {}
            for name, (llm, snac) in checkpoints.items():
                pool_workers[name] = [self.start_worker(f"{name or 'w'}-{i}", llm, snac).url
                                      for i in range(1, cfg.workers + 1)]
            self.wait_ready(self.workers)
            if cfg.pools:
                pools_file = self.log_dir / "pools.json"
                pools_file.write_text(json.dumps(pools_document(pool_workers), indent=2) + "\n")
                self.start_gateway([], port=cfg.port, pools_file=pools_file)
            else:
                self.start_gateway(self.worker_urls, port=cfg.port)
            self.wait_ready([self.gateway])  # type: ignore[list-item]
        except BaseException:
            self.stop()
            raise
        return self

    def _checkpoints(self) -> dict[str, tuple[str, str]]:
        """(LLM, SNAC) per pool name (one model: the name ""); stand-ins written on first use."""
        cfg = self.config
        if cfg.model and not cfg.pools:
            return {"": (cfg.model, cfg.snac or DEFAULT_SNAC)}
        unknown = [name for name in cfg.pools if name not in STAND_IN_POOLS]
        if unknown or len(set(cfg.pools)) != len(cfg.pools) or cfg.model:
            raise StackError(f"--pools takes distinct stand-in pools ({', '.join(STAND_IN_POOLS)})"
                             f" and no --model; got {', '.join(cfg.pools)}")
        cache = cfg.model_cache or cache_dir() / "tiny-model"
        checkpoints = {}
        for name in cfg.pools or [""]:
            llm, snac = ensure_tiny_model(stand_in_dir(cache, name or "english"), self.log,
                                          STAND_IN_POOLS[name or "english"][1])
            checkpoints[name] = (str(llm), str(cfg.snac or snac))
        cfg.worker_args = [*STAND_IN_WORKER_ARGS, *cfg.worker_args]
        cfg.gateway_args = [*STAND_IN_GATEWAY_ARGS, *cfg.gateway_args]
        return checkpoints

    def start_worker(self, worker_id: str, llm: str, snac: str, port: int | None = None) -> Child:
        port = port or free_port(self.config.host)
        argv = [sys.executable, "-m", "orpheus_tts", "worker", "--model", llm, "--snac", snac,
                "--host", self.config.host, "--port", str(port), "--worker-id", worker_id,
                *self.config.worker_args]
        child = spawn(f"worker-{worker_id}", f"http://{self.config.host}:{port}", argv,
                      self.log_dir, nice=self.config.worker_nice)
        with self._lock:
            self.children.append(child)
        return child

    def start_gateway(self, worker_urls: list[str], port: int | None = None,
                      extra_args: list[str] | None = None, name: str = "gateway",
                      pools_file: Path | None = None) -> Child:
        port = port or free_port(self.config.host)
        auth = ["--no-auth"] if self.key_file is None else ["--api-keys-file", str(self.key_file)]
        source = (["--pools-file", str(pools_file)] if pools_file is not None
                  else ["--workers", ",".join(worker_urls)])
        argv = [sys.executable, "-m", "orpheus_tts", "gateway", "--host", self.config.host,
                "--port", str(port), *source, *auth,
                *self.config.gateway_args, *(extra_args or [])]
        child = spawn(name, f"http://{self.config.host}:{port}", argv, self.log_dir)
        with self._lock:
            self.children.append(child)
        return child

    def wait_ready(self, children: list[Child], timeout_s: float | None = None) -> None:
        """Poll each child's `/v1/system` until it says ready; fail fast if one exits."""
        deadline = time.monotonic() + (timeout_s or self.config.ready_timeout_s)
        pending = list(children)
        with httpx.Client(timeout=5.0, headers=self.headers(), trust_env=False) as client:
            while pending:
                for child in list(pending):
                    if not child.alive():
                        raise StackError(f"{child.name} exited with {child.proc.returncode} "
                                         f"while starting; its log ({child.log_path}):\n"
                                         f"{child.log_tail()}")
                    with contextlib.suppress(httpx.HTTPError, ValueError):
                        r = client.get(child.url + SYSTEM_PATH)
                        if r.status_code == 200 and r.json().get("ready"):
                            pending.remove(child)
                if pending and time.monotonic() > deadline:
                    names = ", ".join(c.name for c in pending)
                    raise StackError(f"not ready after {timeout_s or self.config.ready_timeout_s}"
                                     f" s: {names} (logs in {self.log_dir})")
                if pending:
                    time.sleep(0.25)

    # -- stopping ------------------------------------------------------------------------------
    def remove(self, child: Child) -> None:
        """Stop one child and forget it."""
        stop_children([child])
        with self._lock:
            if child in self.children:
                self.children.remove(child)

    def stop(self) -> None:
        with self._lock:
            children, self.children = list(reversed(self.children)), []
        stop_children(children)

    def __enter__(self) -> "LocalStack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --- the command -----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="orpheus-tts up",
        description="Start a gateway and two workers on this machine (CPU, stand-in checkpoint "
                    "unless --model names real weights). Ctrl-C stops everything.")
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT") or DEFAULT_PORT),
                   help="gateway port (default 8000)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--workers", type=int, default=None,
                   help="number of workers (default 2; with --pools, per pool, default 1)")
    p.add_argument("--pools", default=None, metavar="NAME,NAME",
                   help="one gateway over several stand-in model pools: "
                        f"{', '.join(STAND_IN_POOLS)} (the first is the default pool)")
    p.add_argument("--model", default=os.environ.get("MODEL") or None,
                   help="Orpheus checkpoint (path or hub name; default: the stand-in "
                        "checkpoint; make run MODEL=... sets it)")
    p.add_argument("--snac", default=os.environ.get("SNAC") or None,
                   help=f"SNAC decoder (default with --model: {DEFAULT_SNAC})")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="where the stand-in checkpoint is kept (default ~/.cache/orpheus-tts)")
    p.add_argument("--no-auth", action="store_true", help="serve without an API key")
    p.add_argument("--worker-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for each worker (repeatable)")
    p.add_argument("--gateway-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for the gateway (repeatable)")
    p.add_argument("--worker-nice", type=int, default=WORKER_NICE, metavar="N",
                   help="CPU niceness of the workers, so the gateway answers promptly while they"
                        f" compute (default {WORKER_NICE}; 0 runs them like any other process)")
    return p


def _cli_hint() -> str:
    if shutil.which("orpheus-tts"):
        return "orpheus-tts"
    candidate = Path(sys.executable).parent / "orpheus-tts"
    return str(candidate) if candidate.exists() else f"{sys.executable} -m orpheus_tts"


def banner(stack: LocalStack) -> str:
    cfg = stack.config
    # `say` finds the saved key by itself only for the default URL; elsewhere, spell both out.
    env = "" if cfg.port == DEFAULT_PORT and cfg.host == "127.0.0.1" else (
        f"{URL_ENV}={stack.url} " + (f"{KEY_ENV}={stack.api_key} " if stack.api_key else ""))
    lines = [
        "",
        "Orpheus TTS is up" + ("" if cfg.model else
                               " (stand-in checkpoint: the pipeline is real, the audio is noise)"),
        f"  gateway     {stack.url}",
        f"  playground  {stack.url}/   (open it in a browser"
        + ("; it asks for the key: any user name, the key as password)" if stack.api_key else ")"),
        f"  workers     {', '.join(stack.worker_urls)}",
    ]
    if cfg.pools:
        lines.append("  pools       " + "; ".join(f"{name}: model={STAND_IN_POOLS[name][0]}"
                                                  for name in cfg.pools))
    if stack.api_key:
        lines.append(f"  API key     {stack.api_key}   (saved in {stack.key_file})")
    lines += [
        f"  logs        {stack.log_dir}",
        "",
        "Next, in another shell:",
        f"  {env}{_cli_hint()} say \"Hello from Orpheus.\" -o hello.wav",
        "",
        "Ctrl-C stops everything.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    pools = [name.strip() for name in (args.pools or "").split(",") if name.strip()]
    workers = args.workers if args.workers is not None else (1 if pools else 2)
    config = StackConfig(port=args.port, host=args.host, workers=workers, model=args.model,
                         snac=args.snac, model_cache=args.cache_dir and args.cache_dir / "tiny-model",
                         no_auth=args.no_auth, worker_args=args.worker_arg,
                         gateway_args=args.gateway_arg, worker_nice=args.worker_nice,
                         pools=pools)
    stack = LocalStack(config, log=lambda msg: print(msg, flush=True))
    stopping = threading.Event()

    def on_signal(signum, _frame):
        stopping.set()
        raise KeyboardInterrupt

    # Both explicitly: a shell that starts `up` in the background hands it SIGINT ignored.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        what = (f"{config.workers} workers" if not pools else
                f"{config.workers} worker(s) for each of the pools {', '.join(pools)}")
        print(f"starting {what} and a gateway (logs in {stack.log_dir}) ...", flush=True)
        stack.start()
        print(banner(stack), flush=True)
        while True:
            for child in stack.children:
                if not child.alive():
                    print(f"\n{child.name} exited with {child.proc.returncode}; stopping. "
                          f"Its log ({child.log_path}):\n{child.log_tail()}", file=sys.stderr,
                          flush=True)
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return 0
    except (StackError, subprocess.CalledProcessError) as exc:
        print(f"orpheus-tts up: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        # A second Ctrl-C must not interrupt the cleanup.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
        print("stopped.", flush=True)
