"""Rows 5, 6, 7 and 10: one caller must not exhaust a session's memory, open every worker's
breaker for every key, spend its own rate budget on refusals, or learn worker addresses."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from websockets.sync.client import connect

from orpheus_gateway.config import WS_MAX_QUEUED
from tests.support.fake_server import Behaviour

pytestmark = pytest.mark.timeout(180)

SLOW = "[[fake kind=normal chunks=40 chunk_delay_s=0.05]]"


def test_a_session_s_queue_is_capped_with_overloaded(hostile_gateway):
    gw = hostile_gateway()
    with connect(f"{gw.ws_url}/v1/tts/ws", additional_headers=gw.headers(), open_timeout=5) as ws:
        assert json.loads(ws.recv(5))["type"] == "ready"
        total = WS_MAX_QUEUED + 1 + 3  # one speaking, the queue full, three over
        for i in range(total):
            ws.send(json.dumps({"type": "speak", "utterance_id": f"u{i}", "text": SLOW + "x" * 3000}))
        refused, started = [], set()
        deadline = time.monotonic() + 10
        while len(refused) < 3 and time.monotonic() < deadline:
            msg = ws.recv(10)
            if isinstance(msg, bytes):
                continue
            msg = json.loads(msg)
            if msg["type"] == "error":
                refused.append(msg)
            elif msg["type"] == "started":
                started.add(msg["utterance_id"])
        assert [m["utterance_id"] for m in refused] == [f"u{i}" for i in range(total - 3, total)]
        assert all(m["code"] == "overloaded" and m["retryable"] for m in refused)
        ws.send(json.dumps({"type": "cancel", "utterance_id": "u1"}))  # the session still works
        while True:
            msg = ws.recv(10)
            if isinstance(msg, str) and json.loads(msg)["type"] == "cancelled":
                assert json.loads(msg)["utterance_id"] == "u1"
                break


def test_one_key_s_poison_requests_leave_other_keys_served(hostile_gateway):
    gw = hostile_gateway()
    key_a, key_b = gw.keys
    poison = {"text": "[[fake kind=drop chunks=0]]"}
    with httpx.Client(trust_env=False, timeout=10) as client:
        for _ in range(6):
            r = client.post(gw.url + "/v1/tts/stream", headers=gw.headers(key_b), json=poison)
            assert r.status_code in (200, 503), r.text
        ok = 0
        for _ in range(44):
            r = client.post(gw.url + "/v1/tts/stream", headers=gw.headers(key_a),
                            json={"text": "hello"})
            ok += r.status_code == 200 and json.loads(r.text.splitlines()[-1])["type"] == "eos"
        assert ok == 44
        # the poisoner itself is the one held back now
        r = client.post(gw.url + "/v1/tts/stream", headers=gw.headers(key_b), json=poison)
        assert r.status_code == 503


def test_a_concurrency_429_does_not_spend_the_rate_budget(hostile_gateway):
    gw = hostile_gateway("--rate-limit-rpm", "10", "--max-streams-per-key", "2")
    hold = {"text": "[[fake kind=normal chunks=1 first_delay_s=3]]"}
    with httpx.Client(trust_env=False, timeout=20) as client, ThreadPoolExecutor(2) as pool:
        held = [pool.submit(client.post, gw.url + "/v1/tts/stream", headers=gw.headers(),
                            json=hold) for _ in range(2)]
        deadline = time.monotonic() + 5
        while sum(f.open_streams for f in gw.workers) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        refused = [client.post(gw.url + "/v1/tts/stream", headers=gw.headers(),
                               json={"text": "hi"}) for _ in range(30)]
        assert all(r.status_code == 429 for r in refused)
        assert all("concurrent" in r.json()["error"]["message"] for r in refused)
        assert all(f.result().status_code == 200 for f in held)
        # 10 per minute, 2 spent by the held streams: 8 more are admitted
        after = [client.post(gw.url + "/v1/tts/stream", headers=gw.headers(),
                             json={"text": "hi"}).status_code for _ in range(9)]
        assert after == [200] * 8 + [429]


def test_metrics_and_errors_name_no_worker_address(hostile_gateway):
    gw = hostile_gateway()
    with httpx.Client(trust_env=False, timeout=10) as client:
        metrics = client.get(gw.url + "/metrics").text
        assert "orpheus_gateway_breaker_state{" in metrics
        for f in gw.workers:
            f.script(*[Behaviour.http_error(status=500)] * 1000)
        # Every worker refuses: the shipped gateway holds the request until its deadline (a
        # worker may recover), then refuses it; either refusal names no worker.
        r = client.post(gw.url + "/v1/tts/stream", headers=gw.headers(),
                        json={"text": "hi", "timeout_s": 3})
        refused = r.json()["error"] if r.status_code != 200 else json.loads(r.text.splitlines()[-1])
        assert refused["code"] in ("no_workers", "deadline_exceeded"), r.text
        metrics = client.get(gw.url + "/metrics").text
    for f in gw.workers:
        address = f.url.split("//", 1)[1]
        assert address not in metrics and str(f.port) not in r.text, r.text


def test_the_gateway_brings_the_internal_token_workers_require(hostile_gateway, tmp_path):
    token_file = tmp_path / "internal-token"
    token_file.write_text("internal-" + "x" * 24 + "\n")
    gw = hostile_gateway("--worker-token-file", str(token_file),
                         worker_kwargs={"internal_token": "internal-" + "x" * 24})
    r = httpx.post(gw.url + "/v1/tts/stream", headers=gw.headers(), json={"text": "hi"},
                   trust_env=False, timeout=10)
    assert r.status_code == 200 and json.loads(r.text.splitlines()[-1])["type"] == "eos"
    # and a caller that goes around the gateway is refused by the worker
    r = httpx.post(gw.workers[0].url + "/v1/tts/stream", json={"text": "hi"}, trust_env=False,
                   timeout=10)
    assert r.status_code == 401
