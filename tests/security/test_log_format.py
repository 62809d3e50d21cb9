"""The gateway as the CLI starts it writes one log format for every logger (uvicorn's too),
and WebSocket upgrades the server itself refuses (no key header, a bad version, an unknown
route), which carry the key in their query, keep it out of every line."""

from __future__ import annotations

import re
import socket
from urllib.parse import quote

import httpx
import pytest

from tests.security.conftest import assert_clean_log

pytestmark = pytest.mark.timeout(120)

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) "
                  r"[\w.]+: \S")
UPGRADE = "Upgrade: websocket\r\nConnection: Upgrade\r\n"
NONCE = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"


def exchange(port: int, head: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(head.encode())
        s.settimeout(2)
        try:
            return s.recv(200)
        except OSError:
            return b""


def test_one_format_and_no_key_for_upgrades_the_server_refuses(hostile_gateway):
    gw = hostile_gateway()
    q = f"api_key={quote(gw.key, safe='')}"
    heads = {
        "400": f"GET /v1/tts/ws?{q} HTTP/1.1\r\nHost: x\r\n{UPGRADE}Sec-WebSocket-Version: 13\r\n\r\n",
        "400 ": f"GET /v1/tts/ws?{q} HTTP/1.1\r\nHost: x\r\n{UPGRADE}{NONCE}"
                "Sec-WebSocket-Version: 8\r\n\r\n",
        "403": f"GET /nowhere?{q} HTTP/1.1\r\nHost: x\r\n{UPGRADE}{NONCE}"
               "Sec-WebSocket-Version: 13\r\n\r\n",
        "101": f"GET /v1/tts/ws?{q} HTTP/1.1\r\nHost: x\r\n{UPGRADE}{NONCE}"
               "Sec-WebSocket-Version: 13\r\n\r\n",
    }
    for status, head in heads.items():
        assert exchange(gw.port, head).startswith(f"HTTP/1.1 {status.strip()}".encode()), status
    with httpx.Client(trust_env=False, timeout=5) as client:
        assert client.post(f"{gw.url}/v1/tts/stream", headers=gw.headers(),
                           json={"text": "hi"}).status_code == 200
    gw.stop()
    text = gw.log()
    assert "WebSocket /nowhere?[query hidden]" in text  # uvicorn's upgrade lines are there
    assert "POST /v1/tts/stream HTTP/1.1" in text  # and its access lines
    for form in (gw.key, quote(gw.key, safe=""), quote(gw.key)):
        assert form not in text
    odd = [line for line in text.splitlines() if line.strip() and not LINE.match(line)]
    assert not odd, odd
    assert_clean_log(text)


def test_every_gateway_logger_has_query_strings_hidden():
    """A record from any logger, a gateway module's own included (filters on a logger do not
    reach its children's records), reaches the output without the query string, once."""
    import io
    import logging

    from orpheus_gateway.logs import install_log_redaction

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    root = logging.getLogger()
    root.addHandler(handler)  # as the CLI's `basicConfig`, before the redaction is installed
    try:
        install_log_redaction()
        logging.getLogger("orpheus_gateway.relay").warning("lost GET /v1/tts/ws?api_key=%s x",
                                                           "sekrit-1")
        logging.getLogger("orpheus_gateway.ws_socket").warning("GET /v1/x?api_key=sekrit-2 y")
        logging.getLogger("orpheus_gateway.core").warning("GET %s z", "/v1/y?api_key=sekrit-3")
    finally:
        root.removeHandler(handler)
    text = out.getvalue()
    assert "sekrit" not in text
    assert text.splitlines() == ["lost GET /v1/tts/ws?[query hidden] x",
                                 "GET /v1/x?[query hidden] y", "GET /v1/y?[query hidden] z"]
