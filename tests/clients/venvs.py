"""Client packages in virtual environments of their own, created once per machine and cached.

The real clients are driven as their users drive them, each pinned. They do not run in the
project's venv: Canopy's `orpheus-tts` imports as `orpheus_tts` (ours does too), and the voice
frameworks pin their own numpy/openai/protobuf ranges. A venv lives under
`~/.cache/orpheus-tts/client-venvs/<name>-<digest of its pins>`; a change of pins makes a new
one. Creation holds a file lock, so parallel test processes build it once.

`python -m tests.clients.venvs` builds them all (what CI can do ahead of the tests).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

CACHE = (Path(os.environ.get("ORPHEUS_TTS_CACHE", "~/.cache/orpheus-tts")).expanduser()
         / "client-venvs")

PINS: dict[str, tuple[str, ...]] = {
    # Canopy Labs' hosted-service client: its import package is `orpheus_tts`, like ours.
    "canopy": ("orpheus-tts==0.1.6", "websockets==17.4"),
    # The OpenAI-compatible clients and the voice-agent frameworks that use them.
    "frameworks": ("openai==3.57.0", "groq==1.7.0", "pipecat-ai[openai]==1.14.0",
                   "livekit-agents==1.8.9", "livekit-plugins-openai==1.8.9"),
}


def _dir(name: str) -> Path:
    digest = hashlib.sha256("\n".join(PINS[name]).encode()).hexdigest()[:12]
    return CACHE / f"{name}-{digest}"


def client_python(name: str) -> Path:
    """The interpreter of the venv holding client `name`'s pins, created on first use."""
    root = _dir(name)
    python = root / "bin" / "python"
    stamp = root / ".ready"
    if stamp.exists():
        return python
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists():
            return python
        venv.EnvBuilder(with_pip=True, clear=True).create(root)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        *PINS[name]], check=True, timeout=1800)
        stamp.write_text("\n".join(PINS[name]) + "\n")
    return python


def run_driver(name: str, driver: str, *args: str, timeout: float = 120,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `tests/clients/drivers/<driver>` in client `name`'s venv, isolated from this
    project's packages (no PYTHONPATH, cwd outside the repository)."""
    script = Path(__file__).parent / "drivers" / driver
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    clean.update(env or {})
    clean["PYTHONNOUSERSITE"] = "1"
    return subprocess.run([str(client_python(name)), "-I", str(script), *args],
                          capture_output=True, text=True, timeout=timeout, env=clean,
                          cwd=str(CACHE))


if __name__ == "__main__":
    for n in (sys.argv[1:] or PINS):
        print(n, client_python(n))
