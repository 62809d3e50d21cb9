"""`WS /v1/canopy/ws` at the wire: message order, one terminal per request, refusals that do
not end the socket. (Canopy's own client drives it in tests/clients/test_canopy_client.py.)"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from websockets.asyncio.client import connect

from orpheus_tts.protocol import canopy as c
from tests.gateway.conftest import API_KEY
from tests.support.fake_server import Behaviour

CHUNKS, CHUNK_SAMPLES = 3, 480


@pytest.fixture
def gw(fake_server, gateway_server):
    srv = fake_server(chunks=CHUNKS, chunk_samples=CHUNK_SAMPLES, chunk_delay_ms=5)
    gateway = gateway_server([srv.url])
    gateway.wait_polled()
    gateway.worker = srv
    return gateway


def canopy_connect(gw):
    return connect(gw.ws_url + c.CANOPY_WS_PATH,
                   additional_headers={"Authorization": f"Api-Key {API_KEY}"})


async def read_until_terminals(ws, n: int) -> list:
    """Messages until `n` terminal ones (done/error) have arrived."""
    seen, terminals = [], 0
    while terminals < n:
        msg = await asyncio.wait_for(ws.recv(), 10)
        if isinstance(msg, str):
            msg = json.loads(msg)
            terminals += bool(msg.get("done") or msg.get("error"))
        seen.append(msg)
    return seen


async def test_multiplexed_order_and_one_terminal_each(gw):
    async with canopy_connect(gw) as ws:
        for rid in ("a", "b"):
            await ws.send(json.dumps({"prompt": f"Hi {rid}.", "voice": "tara", "request_id": rid}))
        seen = await read_until_terminals(ws, 2)
    accepted = {m["client_request_id"]: m["server_request_id"] for m in seen
                if isinstance(m, dict) and m.get("type") == "accepted"}
    assert set(accepted) == {"a", "b"}
    for rid, sid in accepted.items():
        i_acc = next(i for i, m in enumerate(seen) if isinstance(m, dict)
                     and m.get("type") == "accepted" and m["client_request_id"] == rid)
        i_done = [i for i, m in enumerate(seen) if isinstance(m, dict) and m.get("done")
                  and m["client_request_id"] == rid]
        audio = [i for i, m in enumerate(seen) if isinstance(m, bytes)
                 and int.from_bytes(m[:4], "big") == sid]
        assert len(i_done) == 1 and audio and i_acc < min(audio) and max(audio) < i_done[0]
        pcm = b"".join(seen[i][4:] for i in audio)
        assert abs(len(pcm) - CHUNKS * CHUNK_SAMPLES * 2 * 2) <= 64  # 48 kHz s16le


async def test_refusals_are_addressed_and_the_socket_lives_on(gw):
    async with canopy_connect(gw) as ws:
        await ws.send("not json")
        assert "error" in json.loads(await ws.recv())
        await ws.send(json.dumps({"prompt": "x", "voice": "nobody", "request_id": "r1"}))
        err = json.loads(await ws.recv())
        assert err["client_request_id"] == "r1" and err["error"].startswith("unknown_voice: ")
        await ws.send(json.dumps({"prompt": "x", "voice": "tara", "speed": 2}))
        assert json.loads(await ws.recv())["error"].startswith("unknown_parameter: ")
        await ws.send(json.dumps({"prompt": "Legacy now.", "voice": "tara"}))
        seen = await read_until_terminals(ws, 1)
    assert seen[-1] == {"done": True} and all(isinstance(m, bytes) for m in seen[:-1])
    assert len(gw.worker.stream_requests) == 1


async def test_a_socket_without_a_key_is_refused_at_the_upgrade(gw, client):
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as exc:
        async with connect(gw.ws_url + c.CANOPY_WS_PATH):
            pass
    assert exc.value.response.status_code == 403
    assert client.get(gw.url + c.CANOPY_HEALTH_PATH).json() == {"status": "ok"}


async def test_an_idle_socket_is_closed(fake_server, gateway_server):
    gw = gateway_server([fake_server().url], ws_idle_timeout_s=0.3)
    async with canopy_connect(gw) as ws:
        await asyncio.wait_for(ws.wait_closed(), 5)
    assert ws.close_code == 4408


def test_models_lists_served_names(gw, client):
    from tests.gateway.conftest import auth

    for path in ("/v1/models", "/openai/v1/models"):
        r = client.get(gw.url + path, headers=auth())
        assert r.status_code == 200
        ids = [m["id"] for m in r.json()["data"]]
        assert ids[0] == "fake" and "gpt-4o-mini-tts" in ids  # the worker's name first
    assert client.get(gw.url + "/v1/models").status_code == 401


async def test_deeply_nested_json_is_an_error_and_the_socket_lives_on(gw):
    async with canopy_connect(gw) as ws:
        await ws.send("[" * 50_000)
        msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert msg["error"].startswith("invalid_request: ")
        await ws.send(json.dumps({"prompt": "Hi.", "voice": "tara"}))
        seen = await read_until_terminals(ws, 1)
    assert seen[-1] == {"done": True}


@pytest.mark.parametrize("behaviour,code", [
    (Behaviour.error("engine_error", after=1), "engine_error"),
    (Behaviour.eof(after=1), "upstream_lost"),
    (Behaviour.drop(after=1), "upstream_lost"),
], ids=["error-frame", "eof", "drop"])
async def test_a_worker_failing_mid_stream_ends_with_its_code(gw, caplog, behaviour, code):
    gw.worker.script(behaviour)
    with caplog.at_level(logging.ERROR):
        async with canopy_connect(gw) as ws:
            await ws.send(json.dumps({"prompt": "Hi.", "voice": "tara", "request_id": "r1"}))
            seen = await read_until_terminals(ws, 1)
    assert seen[-1]["error"].startswith(code + ": ") and seen[-1]["client_request_id"] == "r1"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text



async def test_a_stalled_worker_ends_with_deadline_exceeded(fake_server, gateway_server, caplog):
    srv = fake_server()
    srv.script(Behaviour.stall(after=1))
    gw = gateway_server([srv.url], default_timeout_s=1.0)
    gw.wait_polled()
    with caplog.at_level(logging.ERROR):
        async with canopy_connect(gw) as ws:
            await ws.send(json.dumps({"prompt": "Hi.", "voice": "tara"}))
            seen = await read_until_terminals(ws, 1)
    assert seen[-1]["error"].startswith("deadline_exceeded: ")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert srv.wait_until(lambda: srv.cancelled_streams == 1)

async def test_a_duplicate_request_id_is_refused_for_that_request(gw):
    async with canopy_connect(gw) as ws:
        for _ in range(2):
            await ws.send(json.dumps({"prompt": "Hi there.", "voice": "tara",
                                      "request_id": "same"}))
        seen = await read_until_terminals(ws, 2)
    texts = [m for m in seen if isinstance(m, dict)]
    assert [m["client_request_id"] for m in texts if m.get("type") == "accepted"] == ["same"]
    errors = [m for m in texts if "error" in m]
    assert len(errors) == 1 and errors[0]["error"].startswith("invalid_request: ")
    assert errors[0]["client_request_id"] == "same" and "server_request_id" not in errors[0]
    assert len([m for m in texts if m.get("done")]) == 1
    assert len(gw.worker.stream_requests) == 1


async def test_a_wrong_key_is_refused_at_the_upgrade_without_an_error_line(gw, caplog):
    from websockets.exceptions import InvalidStatus

    with caplog.at_level(logging.WARNING):
        with pytest.raises(InvalidStatus) as exc:
            async with connect(gw.ws_url + c.CANOPY_WS_PATH,
                               additional_headers={"Authorization": "Api-Key wrong"}):
                pass
        await asyncio.sleep(0.3)
    assert exc.value.response.status_code in (401, 403)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
