"""`orpheus-tts up` (what `make run` runs): it starts a gateway and two workers, prints the URL,
a key and the next command; `orpheus-tts say` then works with no configuration; Ctrl-C stops
every process it started, the workers' engine processes included."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import stat
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from orpheus_tts.protocol import SAMPLE_RATE
from orpheus_tts.up import free_port

pytestmark = [pytest.mark.engine, pytest.mark.timeout(900)]  # incl. starting the engines

BANNER_END = "Ctrl-C stops everything."


@contextlib.contextmanager
def running_up(tmp: Path, args: list[str], timeout_s: float = 420) -> Iterator[dict]:
    """`orpheus-tts up ARGS --port P --cache-dir TMP/cache` until its banner; SIGINT at exit."""
    port = free_port()
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp / "config"), "PYTHONUNBUFFERED": "1"}
    env.pop("ORPHEUS_API_KEY", None)
    proc = subprocess.Popen([sys.executable, "-m", "orpheus_tts", "up", *args, "--port",
                             str(port), "--cache-dir", str(tmp / "cache")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out: list[str] = []
    deadline = time.monotonic() + timeout_s
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            out.append(line)
            if BANNER_END in line:
                break
            assert time.monotonic() < deadline, "".join(out)
        assert proc.poll() is None, "".join(out)
        yield {"proc": proc, "port": port, "env": env, "tmp": tmp, "banner": "".join(out)}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def up(tiny_model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("up")
    (tmp / "cache").mkdir()
    (tmp / "cache" / "tiny-model").symlink_to(Path(tiny_model))  # reuse the stand-in checkpoint
    with running_up(tmp, []) as stack:
        yield stack


def test_banner_names_url_key_and_next_command(up):
    banner = up["banner"]
    assert f"http://127.0.0.1:{up['port']}" in banner
    key = re.search(r"API key\s+(\S+)", banner).group(1)
    key_file = up["tmp"] / "config" / "orpheus-tts" / "local.key"
    assert key_file.read_text().strip() == key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert 'say "Hello from Orpheus." -o hello.wav' in banner


def test_the_next_command_it_prints_writes_a_wav(up, tmp_path):
    """Run exactly the command the banner suggests (on the default port 8000 that is a bare
    `orpheus-tts say ...`, the key found in the file `up` saved; tests use a free port, so the
    banner spells out URL and key)."""
    lines = up["banner"].splitlines()
    command = shlex.split(lines[lines.index("Next, in another shell:") + 1])
    env = dict(up["env"])
    while "=" in command[0] and not command[0].startswith("-"):
        name, value = command.pop(0).split("=", 1)
        env[name] = value
    assert Path(command[0]).name == "orpheus-tts" and command[1] == "say"
    r = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    seconds = float(re.search(r"wrote .*: ([\d.]+) s of audio", r.stdout).group(1))
    with wave.open(str(tmp_path / "hello.wav")) as wf:
        assert (wf.getnchannels(), wf.getsampwidth(), wf.getframerate()) == (1, 2, SAMPLE_RATE)
        assert wf.getnframes() > 0
        assert abs(wf.getnframes() / SAMPLE_RATE - seconds) < 0.01


def test_ctrl_c_stops_every_process_it_started(up):
    proc = up["proc"]
    family = psutil.Process(proc.pid).children(recursive=True)
    names = " ".join(" ".join(p.cmdline()) for p in family)
    assert names.count("orpheus_tts worker") == 2 and "orpheus_tts gateway" in names
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 0
    gone, alive = psutil.wait_procs(family, timeout=15)
    assert alive == [], [(p.pid, p.cmdline()) for p in alive]
