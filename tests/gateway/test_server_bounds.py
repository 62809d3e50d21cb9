"""The bounds the gateway's HTTP protocol (`server.BoundedHttpToolsProtocol`) adds to uvicorn's
httptools one: a head must arrive in time and within its size however it trickles in, and an
upgraded WebSocket is no longer held to the head deadline."""

from __future__ import annotations

import asyncio
import socket
import time

from websockets.asyncio.client import connect

from orpheus_gateway import server
from orpheus_tts import protocol as p
from tests.gateway.conftest import auth

HEAD_TIMEOUT_S = 0.5


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
        return True
    except (TimeoutError, socket.timeout):
        return False
    except OSError:
        return True


async def test_a_websocket_outlives_the_head_deadline_a_silent_socket_does_not(
        fake_server, gateway_server, monkeypatch):
    monkeypatch.setattr(server.BoundedHttpToolsProtocol, "head_timeout_s", HEAD_TIMEOUT_S)
    gw = gateway_server([fake_server().url])
    port = int(gw.url.rsplit(":", 1)[1])
    silent = socket.create_connection(("127.0.0.1", port))
    ws = await connect(gw.ws_url + p.WS_PATH, additional_headers=auth(), open_timeout=5)
    try:
        assert (await asyncio.wait_for(ws.recv(), 5)) == p.WsReady().model_dump_json()
        await asyncio.sleep(4 * HEAD_TIMEOUT_S)
        await ws.send(p.WsPing(type="ping").model_dump_json())
        assert (await asyncio.wait_for(ws.recv(), 5)) == p.WsPong().model_dump_json()
    finally:
        await ws.close()
    assert await asyncio.to_thread(_closed_within, silent, 5.0)
    silent.close()


def test_a_head_that_trickles_past_the_size_bound_is_cut_before_it_ends(
        fake_server, gateway_server):
    gw = gateway_server([fake_server().url])
    port = int(gw.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        refused = False
        deadline = time.monotonic() + 10
        sent = 0
        while not refused and time.monotonic() < deadline and sent < 4 * server.MAX_HEAD_BYTES:
            try:
                sock.sendall(b"a" * 1024)  # never a complete head
                sent += 1024
            except OSError:
                refused = True
                break
            sock.settimeout(0.02)
            try:
                sock.recv(65536)  # the 400, or the end of the connection
                refused = True
            except (TimeoutError, socket.timeout):
                pass
    assert refused and sent <= 2 * server.MAX_HEAD_BYTES, sent
