"""Row 4: a client that never finishes sending is cut off within the documented bound
(docs/gateway.md, "Hostile clients"), and oversized headers are refused at once."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from orpheus_gateway.config import BODY_TIMEOUT_S, HEADER_TIMEOUT_S

pytestmark = pytest.mark.timeout(120)

SLACK_S = 5.0  # scheduling on a shared 2-core machine


def _drip(sock: socket.socket, first: bytes, drip: bytes, interval_s: float,
          closed_at: dict, name: str, started: float) -> None:
    """Send `first`, then `drip` every `interval_s` until the server closes the socket."""
    sock.settimeout(interval_s)
    try:
        sock.sendall(first)
        while time.monotonic() - started < 60:
            try:
                if sock.recv(65536) == b"":
                    break
            except socket.timeout:
                pass
            if drip:
                sock.sendall(drip)
    except OSError:
        pass
    closed_at[name] = time.monotonic() - started


def test_slow_and_endless_clients_are_cut_off_within_the_bound(hostile_gateway):
    gw = hostile_gateway()
    auth = f"Authorization: Bearer {gw.key}\r\n".encode()
    cases = {
        "slow headers": (b"POST /v1/tts/stream HTTP/1.1\r\nHost: x\r\n", b"X-a: b\r\n"),
        "slow body": (b"POST /v1/tts/stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                      b"\r\n" + auth + b"Content-Length: 100000\r\n\r\n{\"text\": \"", b"a"),
        "endless chunked body": (b"POST /v1/tts/stream HTTP/1.1\r\nHost: x\r\n" + auth +
                                 b"Content-Type: application/json\r\n"
                                 b"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n",
                                 b"1\r\n \r\n"),
        "silent websocket handshake": (b"GET /v1/tts/ws HTTP/1.1\r\nHost: x\r\n", b""),
        **{f"idle {i}": (b"", b"") for i in range(20)},
    }
    closed_at: dict[str, float] = {}
    threads = []
    started = time.monotonic()
    for name, (first, drip) in cases.items():
        sock = socket.create_connection(("127.0.0.1", gw.port))
        t = threading.Thread(target=_drip, args=(sock, first, drip, 0.5, closed_at, name, started),
                             daemon=True)
        t.start()
        threads.append((t, sock))
    for t, sock in threads:
        t.join(70)
        sock.close()
    bound = max(HEADER_TIMEOUT_S, BODY_TIMEOUT_S) + SLACK_S
    late = {name: round(at, 1) for name, at in closed_at.items() if at > bound}
    assert len(closed_at) == len(cases) and not late, (late, closed_at)
    assert min(closed_at.values()) > 1.0  # cut by the bound, not refused outright


def test_oversized_headers_are_refused_at_once(hostile_gateway):
    gw = hostile_gateway()
    with socket.create_connection(("127.0.0.1", gw.port)) as sock:
        sock.settimeout(10)
        try:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20)
                         + b"\r\n\r\n")
        except OSError:
            pass  # the server may close while we are still sending
        reply = b""
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except OSError:
            pass
    assert not reply.startswith(b"HTTP/1.1 200"), reply[:200]
