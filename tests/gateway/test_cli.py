"""`orpheus-tts gateway` as a real process: flags, keys from file and environment, shutdown."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from websockets.sync.client import connect as ws_connect

from orpheus_tts import protocol as p

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_gateway_process_serves_with_file_and_env_keys(fake_server, tmp_path):
    srv = fake_server(chunks=2)
    keys = tmp_path / "keys"
    keys.write_text("# rotated monthly\nfile-key-123\n")
    aliases = tmp_path / "aliases.json"
    aliases.write_text('{"alloy": "leo"}')
    port = free_port()
    log = tmp_path / "gateway.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orpheus_tts", "gateway", "--port", str(port),
             "--workers", srv.url, "--api-keys-file", str(keys), "--voice-aliases", str(aliases),
             "--max-text-chars", "100", "--rate-limit-rpm", "50"],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "ORPHEUS_API_KEYS": "env-key-456"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        for key in ("file-key-123", "env-key-456"):
            r = httpx.post(url + p.STREAM_PATH, json={"text": "hi", "voice": "alloy"},
                           headers={"X-API-Key": key}, timeout=10)
            assert r.status_code == 200 and r.text.splitlines()[-1].startswith('{"type":"eos"')
        assert srv.stream_requests[-1].body["voice"] == "leo"
        r = httpx.post(url + p.STREAM_PATH, json={"text": "x" * 101},
                       headers={"X-API-Key": "file-key-123"}, timeout=10)
        assert r.status_code == 400 and "100" in r.json()["error"]["message"]
        assert httpx.get(url + p.VOICES_PATH, timeout=5).status_code == 401
        with ws_connect(f"ws://127.0.0.1:{port}{p.WS_PATH}?api_key=env-key-456",
                        open_timeout=10) as ws:
            assert json.loads(ws.recv(timeout=10)) == {"type": "ready"}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            # uvicorn shuts down gracefully, then re-raises the signal it caught
            assert proc.wait(timeout=15) in (0, -signal.SIGTERM)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text()
    assert "/v1/tts/ws?[query hidden]" in text  # uvicorn logged the WebSocket's path
    assert "file-key-123" not in text and "env-key-456" not in text


def test_gateway_process_refuses_to_start_without_keys():
    env = {k: v for k, v in os.environ.items() if k != "ORPHEUS_API_KEYS"}
    done = subprocess.run([sys.executable, "-m", "orpheus_gateway", "--workers", "http://a:1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2
    assert "--no-auth" in done.stderr and "ORPHEUS_API_KEYS" in done.stderr
