"""A real worker process with an internal token refuses whoever does not bring it (a pod that
bypasses the gateway), bounds its request bodies, and serves a gateway that has the token."""

from __future__ import annotations

import json
import socket
import sys
import time

import httpx
import pytest

from orpheus_tts import protocol as P
from orpheus_tts.up import free_port, spawn
from tests.support.worker_proc import start_worker

pytestmark = [pytest.mark.engine, pytest.mark.timeout(900)]

TOKEN = "internal-" + "t" * 32


@pytest.fixture(scope="module")
def guarded_worker(tiny_model, tmp_path_factory):
    token_file = tmp_path_factory.mktemp("internal") / "token"
    token_file.write_text(TOKEN + "\n")
    w = start_worker(tiny_model, extra_args=("--worker-id", "w-guarded",
                                             "--internal-token-file", str(token_file)))
    yield w
    w.stop(timeout=30)


def test_a_request_without_the_internal_token_is_refused(guarded_worker):
    url = guarded_worker.url
    body = {"text": "Hello.", "max_tokens": 14}
    with httpx.Client(trust_env=False, timeout=60) as client:
        for headers in ({}, {P.HEADER_INTERNAL_TOKEN: "wrong"},
                        {"Authorization": f"Bearer {TOKEN}"}):
            r = client.post(url + P.STREAM_PATH, json=body, headers=headers)
            assert r.status_code == 401, r.text
            assert r.json()["error"]["code"] == P.ErrorCode.UNAUTHORIZED
            assert client.get(url + P.SYSTEM_PATH, headers=headers).status_code == 401
        # the kubelet's probes and the metrics scrape need no token
        for path in ("/healthz", "/startupz", "/readyz", "/livez", "/metrics"):
            assert client.get(url + path).status_code == 200
        good = {P.HEADER_INTERNAL_TOKEN: TOKEN}
        r = client.post(url + P.STREAM_PATH, json=body, headers=good)
        assert r.status_code == 200
        assert json.loads(r.text.splitlines()[-1])["type"] == "eos"
        # bodies are bounded even for a caller with the token
        r = client.post(url + P.STREAM_PATH, headers={**good, "Content-Type": "application/json"},
                        content=b'{"text": "' + b"a" * (2 << 20) + b'"}')
        assert r.status_code == 413


def test_a_worker_body_that_never_ends_is_cut_off(guarded_worker):
    host, port = guarded_worker.url.split("//")[1].split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port))) as s:
        s.settimeout(30)
        s.sendall(f"POST {P.STREAM_PATH} HTTP/1.1\r\nHost: x\r\n{P.HEADER_INTERNAL_TOKEN}: "
                  f"{TOKEN}\r\nContent-Length: 1000\r\n\r\n{{".encode())
        reply = s.recv(4096)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert time.monotonic() - started < 20


def test_the_gateway_brings_the_token(guarded_worker, tmp_path):
    key_file = tmp_path / "keys"
    key_file.write_text("sk-gw-key-0123456789\n")
    port = free_port()
    child = spawn("gateway", f"http://127.0.0.1:{port}", [
        sys.executable, "-m", "orpheus_tts", "gateway", "--port", str(port),
        "--workers", guarded_worker.url, "--api-keys-file", str(key_file)], tmp_path,
        env={"ORPHEUS_INTERNAL_TOKEN": TOKEN})
    try:
        headers = {"Authorization": "Bearer sk-gw-key-0123456789"}
        deadline = time.monotonic() + 60
        with httpx.Client(trust_env=False, timeout=60) as client:
            while True:
                try:
                    if client.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, child.log_tail()
                time.sleep(0.2)
            r = client.post(f"http://127.0.0.1:{port}{P.STREAM_PATH}", headers=headers,
                            json={"text": "Hello.", "max_tokens": 14})
            assert r.status_code == 200, r.text
            assert json.loads(r.text.splitlines()[-1])["type"] == "eos"
    finally:
        child.signal_group(15)
        child.proc.wait(15)
