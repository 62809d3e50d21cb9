"""The shared fake v1 server keeps its documented promises (other areas build on it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
import pytest

from orpheus_tts import protocol as p
from tests.support.fake_server import Behaviour, FakeServer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def frames(response: httpx.Response) -> list[p.Frame]:
    return [f for f in (p.decode_frame(line) for line in response.iter_lines()) if f]


def test_normal_stream_follows_the_contract(fake_server):
    srv = fake_server(chunks=2, chunk_samples=100, queue_depth=4, worker_id="w-9")
    with httpx.Client() as client:
        r = client.post(srv.url + p.STREAM_PATH, json={"text": "hi"},
                        headers={"X-Request-ID": "rid-1"})
    assert r.status_code == 200 and r.headers["content-type"] == p.NDJSON
    assert r.headers["x-request-id"] == "rid-1" and r.headers["x-orpheus-worker"] == "w-9"
    assert r.headers["x-orpheus-queue-depth"] == "4" and r.headers["x-orpheus-inflight"] == "1"
    got = frames(r)
    assert [f.type for f in got] == ["chunk", "metrics", "chunk", "eos"]
    assert [f.seq for f in got if isinstance(f, p.ChunkFrame)] == [0, 1]
    assert got[1].queue_depth == 4 and got[1].worker_id == "w-9"
    assert got[-1].chunks == 2 and got[-1].samples == 200
    assert srv.wait_until(lambda: srv.completed_streams == 1 and srv.open_streams == 0)


def test_bad_input_and_unknown_voice_are_openai_400s(fake_server):
    srv = fake_server()
    with httpx.Client() as client:
        r = client.post(srv.url + p.STREAM_PATH, json={"text": "hi", "voice": "nobody"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "unknown_voice"
        r = client.post(srv.url + p.STREAM_PATH, content=b"{oops")
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
        assert client.post(srv.url + p.STREAM_PATH, json={"text": "hi", "voice": "alloy"}
                           ).status_code == 200


def test_readiness_and_system_snapshot(fake_server):
    srv = fake_server()
    with httpx.Client() as client:
        assert client.get(srv.url + "/healthz").status_code == 200
        assert client.get(srv.url + "/readyz").status_code == 200
        srv.ready = False
        assert client.get(srv.url + "/readyz").status_code == 503
        r = client.post(srv.url + p.STREAM_PATH, json={"text": "hi"})
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert r.json()["error"]["code"] == "draining"
        snap = p.SystemSnapshot.model_validate(client.get(srv.url + p.SYSTEM_PATH).json())
        assert snap.role == "worker" and snap.ready is False and "tara" in snap.voices
        assert "tara" in client.get(srv.url + p.VOICES_PATH).json()["voices"]
        assert "fake_stream_requests_total 1" in client.get(srv.url + "/metrics").text


def test_scripted_behaviours_are_consumed_in_order_then_default(fake_server):
    srv = fake_server()
    srv.script(Behaviour.http_error(429, "rate_limit_exceeded", retry_after_s=7),
               Behaviour.error("overloaded", after=1))
    with httpx.Client() as client:
        r = client.post(srv.url + p.STREAM_PATH, json={"text": "hi"})
        assert r.status_code == 429 and r.headers["retry-after"] == "7"
        got = frames(client.post(srv.url + p.STREAM_PATH, json={"text": "hi"}))
        assert [f.type for f in got] == ["chunk", "metrics", "error"] and got[-1].retryable
        got = frames(client.post(srv.url + p.STREAM_PATH, json={"text": "hi"}))
        assert got[-1].type == "eos"
    with pytest.raises(ValueError):
        Behaviour("explode")


def test_stopped_server_refuses_and_restarts_on_the_same_port():
    srv = FakeServer().start()
    port = srv.port
    srv.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(srv.url + "/healthz")
    with srv.start():
        assert srv.port == port and httpx.get(srv.url + "/healthz").status_code == 200


def test_runs_as_a_standalone_process():
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.fake_server", "--chunks", "4",
         "--chunk-samples", "10"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("READY http://127.0.0.1:"), proc.stderr.read()
        url = line.split()[1]
        r = httpx.post(url + p.STREAM_PATH, json={"text": "hi"}, timeout=10)
        assert [f.type for f in frames(r)].count("chunk") == 4
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_text_directive_overrides_the_script(fake_server):
    srv = fake_server()
    srv.script(Behaviour.http_error(503))
    with httpx.Client() as client:
        r = client.post(srv.url + p.STREAM_PATH,
                        json={"text": "hi [[fake kind=error code=engine_error chunks=1]]"})
        got = frames(r)
        assert [f.type for f in got] == ["chunk", "metrics", "error"]
        assert got[-1].code == "engine_error"
        assert client.post(srv.url + p.STREAM_PATH, json={"text": "hi"}).status_code == 503
        r = client.post(srv.url + p.STREAM_PATH, json={"text": "[[fake colour=red]]"})
        assert r.status_code == 400 and "colour" in r.json()["error"]["message"]


def test_control_endpoint_scripts_a_server_from_outside(fake_server):
    srv = fake_server()
    with httpx.Client() as client:
        r = client.post(srv.url + "/_fake/control",
                        json={"script": [{"kind": "eof", "chunks": 2}], "queue_depth": 6})
        assert r.status_code == 200 and r.json()["stream_requests"] == 0
        r = client.post(srv.url + p.STREAM_PATH, json={"text": "hi"})
        assert [f.type for f in frames(r)] == ["chunk", "metrics", "chunk"]
        assert r.headers["x-orpheus-queue-depth"] == "6"
        assert client.post(srv.url + "/_fake/control", json={"bogus": 1}).status_code == 400
        client.post(srv.url + "/_fake/control", json={"ready": False})
        assert client.get(srv.url + "/readyz").status_code == 503
        stats = client.get(srv.url + "/_fake/stats").json()
    assert stats["stream_requests"] == 1 and stats["completed_streams"] == 1
