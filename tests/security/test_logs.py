"""Rows 1 and 9: the key never reaches the log under any encoding, and the ordinary events of a
hostile internet (a socket that leaves early, a refused upgrade) leave no ERROR traceback."""

from __future__ import annotations

import base64
import json
import socket
import time
from urllib.parse import quote

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.security.conftest import assert_clean_log

pytestmark = pytest.mark.timeout(120)


def _encodings(key: str) -> set[str]:
    return {key, quote(key, safe=""), quote(key), quote(quote(key, safe=""), safe=""),
            base64.b64encode(key.encode()).decode(), json.dumps(key)[1:-1],
            key.replace("_", "%5F")}


def test_the_key_never_appears_in_the_log(hostile_gateway):
    gw = hostile_gateway()
    key = gw.key
    for query in (f"api%5Fkey={quote(key, safe='')}", f"api_key={quote(key, safe='')}",
                  f"%61pi_key={quote(key, safe='')}", f"x=1&api_key={quote(quote(key, safe=''))}"):
        try:
            with connect(f"{gw.ws_url}/v1/tts/ws?{query}", open_timeout=5) as ws:
                ws.recv(5)
        except InvalidStatus:
            pass
    with httpx.Client(trust_env=False, timeout=5) as client:
        client.get(f"{gw.url}/v1/voices?api_key={quote(key, safe='')}")
        client.get(f"{gw.url}/v1/voices", params={"api_key": key, "k": key})
        client.post(f"{gw.url}/v1/tts/stream", headers=gw.headers(), json={"text": key})
    gw.stop()
    text = gw.log()
    assert "/v1/voices" in text  # the access log is on: the lines are there, the key is not
    for form in _encodings(key):
        assert form not in text, f"key leaked into the log as {form!r}"


def test_ordinary_events_leave_no_error_traceback(hostile_gateway):
    gw = hostile_gateway()
    host, port = "127.0.0.1", gw.port
    # 1. a WebSocket that closes before it authenticates
    with connect(f"{gw.ws_url}/v1/tts/ws", open_timeout=5):
        pass
    # 2. a client that disconnects in the middle of its body
    with socket.create_connection((host, port)) as s:
        s.sendall(b"POST /v1/tts/stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Authorization: Bearer " + gw.key.encode() + b"\r\n"
                  b"Content-Length: 1000\r\n\r\n{\"text\": \"hel")
        time.sleep(0.3)
    # 3. refused upgrades: a wrong key, a foreign origin
    for kwargs in ({"additional_headers": {"Authorization": "Bearer wrong"}},
                   {"origin": "http://evil.example"}):
        with pytest.raises(InvalidStatus):
            with connect(f"{gw.ws_url}/v1/tts/ws", open_timeout=5, **kwargs):
                pass
    # 4. a stream the client abandons after the first bytes
    with httpx.Client(trust_env=False, timeout=5) as client:
        with client.stream("POST", f"{gw.url}/v1/tts/stream", headers=gw.headers(),
                           json={"text": "[[fake kind=normal chunks=50 chunk_delay_s=0.05]]"}) as r:
            next(r.iter_raw())
    time.sleep(1.0)
    gw.stop()
    assert_clean_log(gw.log())
