"""The images `make images` builds, run as a container runtime runs them (podman + runc): each
entry command starts, and the CPU worker image serves a v1 request on the stand-in model, as
UID 10001 (the image's user)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from orpheus_tts import protocol as p
from tests.e2e.conftest import export_images
from tests.k8s.controlplane import free_port

pytestmark = pytest.mark.timeout(1200)

IMAGE = "localhost/orpheus-tts-{}:latest"
# podman on this machine: runc (crun fails on cgroup v1 hybrid), cgroupfs (no systemd).
PODMAN = ["podman", "run", "--rm", "--runtime", "runc", "--cgroup-manager", "cgroupfs",
          "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]


@pytest.fixture(scope="module")
def images() -> None:
    if shutil.which("podman") is None:
        pytest.fail("podman is missing: `make images` installs it (scripts/install-node-deps.sh)", pytrace=False)
    export_images()


@pytest.mark.parametrize(("name", "command", "expect"), [
    ("gateway", [], "--discover"),  # the image's default command: `gateway --help`
    ("operator", ["operator", "--help"], "usage"),
    ("worker-cpu", [], "--model"),  # `worker --help`
    ("worker-cpu", ["make-tiny-model", "--help"], "DIR"),
])
def test_entry_command_runs(images: None, name: str, command: list[str], expect: str) -> None:
    result = subprocess.run([*PODMAN, "--read-only", "--network", "none", IMAGE.format(name), *command],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert expect in result.stdout, result.stdout


@pytest.fixture
def worker_container(images: None) -> Iterator[tuple[str, str]]:
    models = Path(tempfile.mkdtemp(prefix="orpheus-models-"))
    models.chmod(0o777)  # the image runs as UID 10001
    name = f"orpheus-worker-smoke-{free_port()}"
    port = free_port()
    volume = ["-v", f"{models}:/models"]
    try:
        made = subprocess.run([*PODMAN, "--network", "none", *volume, IMAGE.format("worker-cpu"),
                               "make-tiny-model", "/models/standin"], capture_output=True, text=True, timeout=600)
        assert made.returncode == 0, made.stderr
        # Host networking on loopback only: the worker binds 127.0.0.1.
        subprocess.run([*PODMAN, "-d", "--name", name, "--network", "host", "--tmpfs", "/tmp", *volume,
                "--shm-size", "512m", IMAGE.format("worker-cpu"), "worker",
                        "--model", "/models/standin/llm", "--snac", "/models/standin/snac",
                        "--host", "127.0.0.1", "--port", str(port), "--max-num-seqs", "2",
                        "--max-model-len", "2048", "--dtype", "float32", "--constrain-to-audio-tokens"],
                       check=True, capture_output=True, text=True, timeout=120)
        yield f"http://127.0.0.1:{port}", name
    finally:
        subprocess.run(["podman", "rm", "-f", "-t", "5", name], capture_output=True, timeout=120)
        shutil.rmtree(models, ignore_errors=True)


def test_cpu_worker_image_serves_a_v1_request(worker_container: tuple[str, str]) -> None:
    url, name = worker_container
    deadline = time.monotonic() + 600
    while True:
        try:
            if httpx.get(url + "/readyz", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            logs = subprocess.run(["podman", "logs", "--tail", "40", name], capture_output=True, text=True)
            raise AssertionError(f"the worker never became ready:\n{logs.stdout}{logs.stderr}")
        time.sleep(2)
    response = httpx.post(url + p.STREAM_PATH, timeout=300,
                          json={"text": "Hello from the image.", "max_tokens": 42})
    assert response.status_code == 200, response.text
    frames = [json.loads(line) for line in response.text.splitlines()]
    assert frames[-1]["type"] == "eos"
    chunks = [f for f in frames if f["type"] == "chunk"]
    assert chunks and sum(len(p.decode_frame(json.dumps(c)).pcm()) for c in chunks) == frames[-1]["samples"] * 2
