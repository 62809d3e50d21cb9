"""Holding requests while no worker can take them (scale from zero), the pending limit, the
gateway's own readiness, and the system key that reads `/v1/system` and nothing else."""

from __future__ import annotations

import threading

import httpx

from orpheus_tts import protocol as p
from tests.gateway.conftest import auth
from tests.support.fake_server import Behaviour

STREAM = p.STREAM_PATH
SYSTEM_KEY = "system-key-0123456789abcdef"


def lines_of(response: httpx.Response) -> list[dict]:
    return [p.decode_frame(line.encode()).model_dump() for line in response.text.splitlines()]


def test_a_held_request_is_served_once_a_worker_is_ready(fake_server, gateway_server, client):
    worker = fake_server(ready=False)  # starting: its /v1/system says not ready
    gw = gateway_server([worker.url])
    gw.wait_polled()
    ready = client.get(gw.url + "/readyz")
    assert ready.status_code == 200 and ready.json()["workers_ready"] == 0

    result: dict = {}
    caller = threading.Thread(target=lambda: result.update(r=client.post(
        gw.url + STREAM, json={"text": "x", "timeout_s": 20}, headers=auth())))
    caller.start()
    assert gw.wait_until(lambda: gw.gateway.pools.default.upstream.held == 1)
    snapshot = client.get(gw.url + p.SYSTEM_PATH, headers=auth()).json()
    assert snapshot["queue_depth"] == 1  # pending demand, what the autoscaler scales on
    assert not worker.stream_requests

    worker.ready = True
    caller.join(20)
    frames = lines_of(result["r"])
    assert result["r"].status_code == 200
    assert [f["type"] for f in frames].count("eos") == 1 and frames[-1]["type"] == "eos"
    assert gw.gateway.pools.default.upstream.held == 0 and gw.gateway.queue_depth() == 0


def test_over_the_pending_limit_is_503_with_retry_after(fake_server, gateway_server, client):
    gw = gateway_server([fake_server(ready=False).url], max_pending=1)
    gw.wait_polled()
    holder = threading.Thread(target=lambda: client.post(
        gw.url + STREAM, json={"text": "x", "timeout_s": 3}, headers=auth()))
    holder.start()
    assert gw.wait_until(lambda: gw.gateway.pools.default.upstream.held == 1)
    refused = client.post(gw.url + STREAM, json={"text": "y", "timeout_s": 3}, headers=auth())
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == p.ErrorCode.OVERLOADED
    assert int(refused.headers["Retry-After"]) >= 1
    holder.join(10)


def test_a_held_request_ends_at_its_deadline_with_one_error_frame(gateway_server, client):
    gw = gateway_server(["http://127.0.0.1:9"])  # nothing listens: no worker at all
    r = client.post(gw.url + STREAM, json={"text": "x", "timeout_s": 1.5}, headers=auth())
    frames = lines_of(r)
    assert len(frames) == 1 and frames[0]["code"] == p.ErrorCode.DEADLINE_EXCEEDED
    assert gw.gateway.pools.default.upstream.held == 0 and gw.gateway.pools.default.upstream.waiting == 0


def test_a_client_that_leaves_while_held_is_no_longer_pending(fake_server, gateway_server):
    gw = gateway_server([fake_server(ready=False).url])
    gw.wait_polled()
    with httpx.Client(timeout=0.5) as impatient:
        try:
            impatient.post(gw.url + STREAM, json={"text": "x", "timeout_s": 30}, headers=auth())
        except httpx.ReadTimeout:
            pass
    assert gw.wait_until(lambda: gw.gateway.pools.default.upstream.held == 0)
    assert gw.gateway.queue_depth() == 0


def test_the_system_key_reads_the_snapshot_and_nothing_else(fake_server, gateway_server, client):
    srv = fake_server()
    srv.default = Behaviour.normal(1)
    gw = gateway_server([srv.url], system_keys=[SYSTEM_KEY])
    gw.wait_polled()
    system = {"Authorization": f"Bearer {SYSTEM_KEY}"}
    assert client.get(gw.url + p.SYSTEM_PATH, headers=system).status_code == 200
    assert client.get(gw.url + p.SYSTEM_PATH).status_code == 401
    assert client.post(gw.url + STREAM, json={"text": "x"}, headers=system).status_code == 401
    assert client.get(gw.url + p.VOICES_PATH, headers=system).status_code == 401
    assert client.post(gw.url + p.SYSTEM_PATH, headers=system).status_code == 401
    assert not srv.stream_requests
    # A user's key still reads everything it did.
    assert client.get(gw.url + p.SYSTEM_PATH, headers=auth()).status_code == 200
