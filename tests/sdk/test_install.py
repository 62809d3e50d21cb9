"""The SDK stays light: the base install pulls httpx, pydantic and websockets only, and
importing the SDK and the CLI loads no server stack, no voice-agent framework and not even
the WebSocket client until a session is opened (checked in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = {"torch", "vllm", "fastapi", "starlette", "uvicorn", "kopf", "kubernetes", "snac",
         "transformers", "numpy", "prometheus_client", "sentencex", "pipecat", "livekit",
         "websockets"}


def test_base_dependencies_are_only_httpx_pydantic_and_websockets():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {d.split(">")[0].split("=")[0].split("[")[0].strip().lower()
             for d in project["dependencies"]}
    assert names == {"httpx", "pydantic", "websockets"}


def test_importing_the_sdk_and_cli_loads_no_server_stack():
    code = (
        "import sys, json; import orpheus_tts.sdk, orpheus_tts.say, orpheus_tts.wav, "
        "orpheus_tts.cli; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT, timeout=60).stdout
    assert HEAVY.isdisjoint(json.loads(out))


def test_distribution_name_is_not_canopys():
    """PyPI's `orpheus-tts` is Canopy Labs' client (import package `orpheus_tts` too): ours must
    be installable under a name of its own, and the README must say the two cannot coexist."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "orpheus-tts-cluster"
    extras = project["optional-dependencies"]
    assert all(not d.startswith("orpheus-tts[") for deps in extras.values() for d in deps)
    readme = (ROOT / "README.md").read_text()
    assert "cannot share an environment" in readme and "orpheus-tts-cluster" in readme
