"""Rows 2, 3 and 8: what a browser on another site may do with a remembered key, deeply nested
JSON, and loose types — against the real gateway process."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.security.conftest import assert_clean_log

pytestmark = pytest.mark.timeout(120)

NESTED = "[" * 2000 + "]" * 2000


def _basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"user:{key}".encode()).decode()}


def test_cross_origin_upgrade_refused_own_origin_and_configured_ones_accepted(hostile_gateway):
    gw = hostile_gateway("--allowed-origins", "https://app.example")
    url = f"{gw.ws_url}/v1/tts/ws"
    with pytest.raises(InvalidStatus) as refused:
        with connect(url, origin="http://evil.example", additional_headers=_basic(gw.key),
                     open_timeout=5):
            pass
    assert refused.value.response.status_code == 403
    for origin in (f"http://127.0.0.1:{gw.port}", "https://app.example", None):
        with connect(url, origin=origin, additional_headers=_basic(gw.key),
                     open_timeout=5) as ws:
            assert json.loads(ws.recv(5))["type"] == "ready"


def test_the_default_allows_only_the_playground_s_own_origin(hostile_gateway):
    gw = hostile_gateway()
    with pytest.raises(InvalidStatus) as refused:
        with connect(f"{gw.ws_url}/v1/tts/ws", origin="http://localhost.evil.example",
                     additional_headers=_basic(gw.key), open_timeout=5):
            pass
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize("path", ["/v1/tts/stream", "/v1/audio/speech"])
def test_a_post_that_is_not_json_is_415(hostile_gateway, path):
    gw = hostile_gateway()
    body = json.dumps({"text": "hi"} if path == "/v1/tts/stream" else
                      {"input": "hi", "model": "tts-1", "voice": "tara"})
    with httpx.Client(trust_env=False, timeout=10) as client:
        for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                      None):
            headers = {**_basic(gw.key), **({"Content-Type": ctype} if ctype else {})}
            r = client.post(gw.url + path, content=body, headers=headers)
            assert r.status_code == 415, (ctype, r.text)
            assert r.json()["error"]["type"] == "invalid_request_error"
        r = client.post(gw.url + path, content=body,
                        headers={**gw.headers(), "Content-Type": "application/json; charset=utf-8"})
        assert r.status_code == 200


@pytest.mark.parametrize("path", ["/v1/tts/stream", "/v1/audio/speech"])
def test_deeply_nested_json_is_a_400(hostile_gateway, path):
    gw = hostile_gateway()
    with httpx.Client(trust_env=False, timeout=10) as client:
        for body in (NESTED, '{"text": ' + NESTED + "}"):
            r = client.post(gw.url + path, content=body,
                            headers={**gw.headers(), "Content-Type": "application/json"})
            assert r.status_code == 400, r.text
            assert r.json()["error"]["code"] == "invalid_request"
    gw.stop()
    assert_clean_log(gw.log())


def test_nested_json_on_the_websocket_is_an_error_and_the_session_lives_on(hostile_gateway):
    gw = hostile_gateway()
    with connect(f"{gw.ws_url}/v1/tts/ws", additional_headers=gw.headers(), open_timeout=5) as ws:
        assert json.loads(ws.recv(5))["type"] == "ready"
        ws.send(json.dumps({"type": "speak", "utterance_id": "u1",
                            "text": "[[fake kind=normal chunks=20 chunk_delay_s=0.05]]"}))
        assert json.loads(ws.recv(5))["type"] == "started"
        ws.send('{"type": "ping", "x": ' + NESTED + "}")
        ws.send(NESTED)
        errors, done = [], None
        while done is None:
            msg = ws.recv(10)
            if isinstance(msg, bytes):
                continue
            msg = json.loads(msg)
            if msg["type"] == "error" and msg["utterance_id"] is None:
                errors.append(msg)
            elif msg["type"] == "done":
                done = msg
        assert len(errors) == 2 and all(e["code"] == "invalid_request" for e in errors)
        assert done["utterance_id"] == "u1"  # the utterance in flight finished normally
        ws.send(json.dumps({"type": "ping"}))
        assert json.loads(ws.recv(5))["type"] == "pong"
    # and as the first (auth) message of a browser session: refused cleanly
    with connect(f"{gw.ws_url}/v1/tts/ws", open_timeout=5) as ws:
        ws.send('{"type": "auth", "api_key": ' + NESTED + "}")
        with pytest.raises(Exception):
            ws.recv(5)
        assert ws.close_code == 4401
    gw.stop()
    assert_clean_log(gw.log())


LOOSE = [("max_tokens", "5"), ("max_tokens", True), ("max_tokens", 5.5), ("seed", "7"),
         ("top_k", 10**9), ("temperature", "0.5"), ("temperature", True), ("timeout_s", "30"),
         ("voice", 5)]


def test_loose_types_and_unbounded_numbers_are_refused(hostile_gateway):
    gw = hostile_gateway()
    with httpx.Client(trust_env=False, timeout=10) as client:
        for field, value in LOOSE:
            r = client.post(gw.url + "/v1/tts/stream", headers=gw.headers(),
                            json={"text": "hello", field: value})
            assert r.status_code == 400, (field, value, r.text)
            assert r.json()["error"]["param"] == field
        # the same through the WebSocket's params
        with connect(f"{gw.ws_url}/v1/tts/ws", additional_headers=gw.headers(),
                     open_timeout=5) as ws:
            assert json.loads(ws.recv(5))["type"] == "ready"
            ws.send(json.dumps({"type": "speak", "utterance_id": "u", "text": "hi",
                                "params": {"max_tokens": "5"}}))
            reply = json.loads(ws.recv(5))
            assert reply["type"] == "error" and reply["utterance_id"] == "u", reply
            ws.send(json.dumps({"type": "speak", "utterance_id": "v", "text": "hi",
                                "interrupt": "yes"}))
            assert json.loads(ws.recv(5))["type"] == "error"


def test_errors_never_echo_unbounded_input(hostile_gateway):
    gw = hostile_gateway()
    huge = "v" * 100_000
    bodies = [
        ("/v1/tts/stream", {"text": "hello", "voice": huge}),
        ("/v1/tts/stream", {"text": "hello", huge: 1}),
        ("/v1/audio/speech", {"input": "hello", "model": "tts-1", "voice": huge}),
        ("/v1/audio/speech", {"input": "hello", "model": huge, "voice": "tara"}),
        ("/v1/audio/speech", {"input": "hello", "model": "tts-1", "voice": "tara",
                              "response_format": huge}),
    ]
    with httpx.Client(trust_env=False, timeout=10) as client:
        for path, body in bodies:
            r = client.post(gw.url + path, headers=gw.headers(), json=body)
            assert r.status_code == 400, r.text
            assert len(r.content) < 1000, r.text[:300]
    with connect(f"{gw.ws_url}/v1/tts/ws", additional_headers=gw.headers(), open_timeout=5) as ws:
        assert json.loads(ws.recv(5))["type"] == "ready"
        for msg in ({"type": huge}, {"type": "cancel", "utterance_id": huge},
                    {"type": "speak", "utterance_id": "u", "text": "hi", "voice": huge}):
            ws.send(json.dumps(msg))
            reply = ws.recv(5)
            assert json.loads(reply)["type"] == "error" and len(reply) < 1000, reply[:300]
