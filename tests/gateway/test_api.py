"""Auth, limits, bad input, errors and the state endpoints of a live gateway."""

from __future__ import annotations

import base64
import logging

import httpx
import pytest
from starlette.routing import Route, WebSocketRoute
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from orpheus_gateway.middleware import BASIC_CHALLENGE, BROWSER_PATHS, PUBLIC_PATHS
from orpheus_tts import protocol as p
from tests.gateway.conftest import API_KEY, OTHER_KEY, auth
from tests.support.promtool import check_metrics

STREAM = p.STREAM_PATH
JSON = {"Content-Type": "application/json"}
SPEECH = "/v1/audio/speech"


@pytest.fixture
def gw(fake_server, gateway_server):
    srv = fake_server()
    gateway = gateway_server([srv.url])
    gateway.wait_polled()
    gateway.worker = srv
    return gateway


def _concrete(path: str) -> str:
    return path.replace("{", "").replace("}", "")


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_every_route_but_health_and_metrics_needs_a_key(gw, client):
    routes = [r for r in gw.app.routes if isinstance(r, (Route, WebSocketRoute))]
    checked = 0
    for route in routes:
        if isinstance(route, WebSocketRoute):
            for headers in ({"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}):
                with pytest.raises(InvalidStatus) as exc:
                    ws_connect(gw.ws_url + route.path, additional_headers=headers,
                               open_timeout=5)
                assert exc.value.response.status_code == 401
                assert b"invalid_api_key" in exc.value.response.body
            checked += 1
            continue
        for method in sorted(route.methods - {"HEAD"}):
            url = gw.url + _concrete(route.path)
            if route.path in PUBLIC_PATHS:
                r = client.request(method, url)
                assert r.status_code != 401, route.path
                continue
            for headers in ({}, {"Authorization": "Bearer nope"}, {"X-API-Key": "nope"},
                            {"Authorization": f"Basic {API_KEY}"},  # not user:password
                            {"Authorization": _basic("me", "nope")}):
                r = client.request(method, url, headers=headers, json={"text": "x"})
                assert r.status_code == 401, (method, route.path, headers)
                err = r.json()["error"]
                assert err["type"] == "authentication_error"
                assert err["code"] == p.ErrorCode.UNAUTHORIZED
                # a page asks the browser for the key; an API says how to send it
                assert r.headers.get("WWW-Authenticate") == (
                    BASIC_CHALLENGE if route.path in BROWSER_PATHS else "Bearer")
                assert "nope" not in r.text and API_KEY not in r.text
            checked += 1
    assert checked >= 10  # stream, speech, ws, voices, system, the page and the docs at least
    # Unknown paths do not tell whether they exist without a key either.
    assert client.get(gw.url + "/v1/whatever").status_code == 401
    assert set(PUBLIC_PATHS) == {"/healthz", "/readyz", "/metrics", "/health"}


def test_public_routes_answer_without_a_key(gw, client):
    assert client.get(gw.url + "/healthz").json() == {"status": "ok"}
    assert client.get(gw.url + "/readyz").status_code == 200
    assert client.get(gw.url + "/metrics").headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize("authorization", [_basic("anyone", API_KEY), _basic(API_KEY, ""),
                                           f"Bearer {API_KEY}"])
def test_pages_and_docs_open_with_the_key_a_browser_was_asked_for(gw, client, authorization):
    headers = {"Authorization": authorization}
    page = client.get(gw.url + "/", headers=headers)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert client.get(gw.url + "/openapi.json", headers=headers).json()["paths"][STREAM]
    assert client.get(gw.url + "/docs", headers=headers).status_code == 200
    assert client.get(gw.url + "/redoc", headers=headers).status_code == 200
    assert client.get(gw.url + "/v1/voices", headers=headers).status_code == 200


@pytest.mark.parametrize("headers", [{"Authorization": f"Bearer {API_KEY}"},
                                     {"X-API-Key": API_KEY},
                                     {"authorization": f"bearer {OTHER_KEY}"}])
def test_both_header_styles_are_accepted(gw, client, headers):
    r = client.post(gw.url + STREAM, json={"text": "hi"}, headers=headers)
    assert r.status_code == 200 and r.text.rstrip().endswith("}")
    assert client.get(gw.url + p.VOICES_PATH, headers=headers).status_code == 200


def test_query_param_key_is_only_for_websockets(gw, client):
    r = client.post(gw.url + STREAM + f"?api_key={API_KEY}", json={"text": "hi"})
    assert r.status_code == 401


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_keys_never_reach_the_logs(gw, client):
    collect = _Collect()
    loggers = [logging.getLogger(n) for n in ("uvicorn.error", "uvicorn.access",
                                              "orpheus_gateway")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(collect)
        lg.setLevel(logging.DEBUG)
    try:
        client.post(gw.url + STREAM, json={"text": "hi"},
                    headers={"X-API-Key": "leaky-wrong-key"})
        client.post(gw.url + STREAM, json={"text": "hi"}, headers=auth())
        with ws_connect(gw.ws_url + p.WS_PATH + f"?api_key={API_KEY}", open_timeout=5) as ws:
            ws.recv(timeout=5)
    finally:
        for lg, level in zip(loggers, levels):
            lg.removeHandler(collect)
            lg.setLevel(level)
    text = "\n".join(collect.lines)
    assert "/v1/tts/ws?[query hidden]" in text  # uvicorn logged the WebSocket path, no query
    assert API_KEY not in text and "leaky-wrong-key" not in text


def test_rate_limit_429_with_retry_after(fake_server, gateway_server, client):
    srv = fake_server()
    gw = gateway_server([srv.url], rate_limit_rpm=3)
    gw.wait_polled()
    codes = [client.post(gw.url + STREAM, json={"text": "x"}, headers=auth()).status_code
             for _ in range(3)]
    assert codes == [200, 200, 200]
    r = client.post(gw.url + STREAM, json={"text": "x"}, headers=auth())
    assert r.status_code == 429
    assert r.json()["error"]["code"] == p.ErrorCode.RATE_LIMITED
    assert r.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(r.headers["Retry-After"]) <= 20
    r = client.post(gw.url + SPEECH, json={"model": "tts-1", "input": "x", "voice": "alloy"},
                    headers=auth())
    assert r.status_code == 429 and "Retry-After" in r.headers
    # Another key has its own budget.
    assert client.post(gw.url + STREAM, json={"text": "x"}, headers=auth(OTHER_KEY)
                       ).status_code == 200
    assert len(srv.stream_requests) == 4
    assert 'orpheus_gateway_rate_limit_rejections_total{limit="rpm"} 2.0' in \
        client.get(gw.url + "/metrics").text


def test_concurrent_stream_limit_per_key(fake_server, gateway_server):
    srv = fake_server(chunks=150, chunk_delay_ms=20)  # 3 s: still streaming while we probe
    gw = gateway_server([srv.url], max_streams_per_key=1)
    gw.wait_polled()
    with httpx.Client(timeout=20) as c:
        with c.stream("POST", gw.url + STREAM, json={"text": "x"}, headers=auth()) as first:
            assert first.status_code == 200
            second = c.post(gw.url + STREAM, json={"text": "x"}, headers=auth())
            assert second.status_code == 429 and second.headers["Retry-After"] == "1"
            assert "concurrent" in second.json()["error"]["message"]
            assert c.post(gw.url + STREAM, json={"text": "x"}, headers=auth(OTHER_KEY)
                          ).status_code == 200
            first.read()
        key_id = gw.gateway.keys.identify(API_KEY)
        # The slot is released when the response's body task ends, just after its last byte.
        assert gw.wait_until(lambda: gw.gateway.limiter.active_streams(key_id) == 0)
        assert c.post(gw.url + STREAM, json={"text": "x"}, headers=auth()).status_code == 200


BAD_STREAM_BODIES = [
    (b"{not json", None, p.ErrorCode.INVALID_REQUEST),
    (b"[1, 2]", None, p.ErrorCode.INVALID_REQUEST),
    (b'"text"', None, p.ErrorCode.INVALID_REQUEST),
    (b"", None, p.ErrorCode.INVALID_REQUEST),
    (b"{}", "text", p.ErrorCode.INVALID_REQUEST),
    (b'{"text": ""}', "text", p.ErrorCode.INVALID_REQUEST),
    (b'{"text": "   "}', "text", p.ErrorCode.INVALID_REQUEST),
    (b'{"text": 5}', "text", p.ErrorCode.INVALID_REQUEST),
    (b'{"text": "x", "temperature": "hot"}', "temperature", p.ErrorCode.INVALID_REQUEST),
    (b'{"text": "x", "temperature": 9}', "temperature", p.ErrorCode.INVALID_REQUEST),
    (b'{"text": "x", "repetition_penalty": 1.0}', "repetition_penalty",
     p.ErrorCode.INVALID_REQUEST),
    (b'{"text": "x", "top_k": -1}', "top_k", p.ErrorCode.INVALID_REQUEST),
    (b'{"text": "x", "timeout_s": 0}', "timeout_s", p.ErrorCode.INVALID_REQUEST),
    (b'{"text": "x", "foo": 1}', "foo", p.ErrorCode.UNKNOWN_PARAMETER),
    (b'{"text": "x", "voice": "bogus"}', "voice", p.ErrorCode.UNKNOWN_VOICE),
    (b'{"text": "\\ud800"}', None, None),  # lone surrogate: whatever the code, a 400
]


@pytest.mark.parametrize("body,param,code", BAD_STREAM_BODIES)
def test_bad_stream_input_is_a_400_in_openai_shape(gw, client, body, param, code):
    r = client.post(gw.url + STREAM, content=body,
                    headers={**auth(), "Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["message"]
    if code is not None:
        assert err["code"] == code
    if param is not None:
        assert err["param"] == param
    assert not gw.worker.stream_requests


def test_text_over_the_limit_states_the_limit(fake_server, gateway_server, client):
    srv = fake_server()
    gw = gateway_server([srv.url], max_text_chars=50)
    gw.wait_polled()
    for path, body in ((STREAM, {"text": "a" * 51}),
                       (SPEECH, {"model": "tts-1", "input": "a" * 51, "voice": "alloy"})):
        r = client.post(gw.url + path, json=body, headers=auth())
        assert r.status_code == 400
        assert r.json()["error"]["code"] == p.ErrorCode.TEXT_TOO_LONG
        assert "50" in r.json()["error"]["message"]
        assert r.json()["error"]["param"] == ("text" if path == STREAM else "input")


BAD_SPEECH = [
    ({"input": "x", "voice": "alloy"}, "model", p.ErrorCode.INVALID_REQUEST),
    ({"model": "tts-1", "voice": "alloy"}, "input", p.ErrorCode.INVALID_REQUEST),
    ({"model": "tts-1", "input": "", "voice": "alloy"}, "input", p.ErrorCode.INVALID_REQUEST),
    ({"model": "tts-1", "input": "  \n ", "voice": "alloy"}, "input",
     p.ErrorCode.INVALID_REQUEST),
    ({"model": "tts-1", "input": 7, "voice": "alloy"}, "input", p.ErrorCode.INVALID_REQUEST),
    ({"model": "tts-1", "input": "x"}, "voice", p.ErrorCode.INVALID_REQUEST),
    ({"model": "tts-1", "input": "x", "voice": "bogus"}, "voice", p.ErrorCode.UNKNOWN_VOICE),
    ({"model": "tts-1", "input": "x", "voice": {"id": ""}}, "voice", p.ErrorCode.INVALID_REQUEST),
    ({"model": "tts-1", "input": "x", "voice": {"name": "tara"}}, "voice",
     p.ErrorCode.INVALID_REQUEST),
    ({"model": "tts-1", "input": "x", "voice": 7}, "voice", p.ErrorCode.INVALID_REQUEST),
    ({"model": "tts-1", "input": "x", "voice": "alloy", "response_format": "webm"},
     "response_format", p.ErrorCode.UNSUPPORTED_FORMAT),
    ({"model": "tts-1", "input": "x", "voice": "alloy", "speed": 0.2}, "speed",
     p.ErrorCode.INVALID_REQUEST),
    ({"model": "tts-1", "input": "x", "voice": "alloy", "speed": 9}, "speed",
     p.ErrorCode.INVALID_REQUEST),
    ({"model": "tts-1", "input": "x", "voice": "alloy", "sample_rate": 4000}, "sample_rate",
     p.ErrorCode.INVALID_REQUEST),
    ({"model": "tts-1", "input": "x", "voice": "alloy", "instructions": 5}, "instructions",
     p.ErrorCode.INVALID_REQUEST),
    ({"model": "whisper-1", "input": "x", "voice": "alloy"}, "model",
     p.ErrorCode.UNKNOWN_MODEL),
    ({"model": "tts-1", "input": "x", "voice": "alloy", "stream_format": "chunks"},
     "stream_format", p.ErrorCode.INVALID_REQUEST),
    ({"model": "tts-1", "input": "x", "voice": "alloy", "seed": 3}, "seed",
     p.ErrorCode.UNKNOWN_PARAMETER),
]


@pytest.mark.parametrize("body,param,code", BAD_SPEECH)
def test_bad_speech_input_is_a_400_in_openai_shape(gw, client, body, param, code):
    r = client.post(gw.url + SPEECH, json=body, headers=auth())
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert (err["param"], err["code"]) == (param, code)
    assert err["type"] == "invalid_request_error"
    assert not gw.worker.stream_requests


def test_404_405_and_oversized_bodies_keep_openai_shape(gw, client):
    r = client.get(gw.url + "/v1/nothing-here", headers=auth())
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    r = client.get(gw.url + STREAM, headers=auth())
    assert r.status_code == 405 and set(r.json()) == {"error"}
    assert "POST" in r.headers.get("allow", "")
    r = client.post(gw.url + STREAM, content=b"x" * (2 << 20), headers={**auth(), **JSON})
    assert r.status_code == 413 and "error" in r.json()


def test_voices_lists_served_voices_and_aliases(gw, client):
    body = client.get(gw.url + p.VOICES_PATH, headers=auth()).json()
    assert "tara" in body["voices"]
    assert body["aliases"]["alloy"] == "tara"
    assert {v["id"] for v in body["data"]} == set(body["voices"])


def test_request_id_is_echoed_everywhere(gw, client):
    r = client.post(gw.url + STREAM, content=b"{",
                    headers={**auth(), **JSON, "X-Request-ID": "abc"})
    assert r.headers["X-Request-ID"] == "abc"
    r = client.post(gw.url + STREAM, json={"text": "x"}, headers={"X-Request-ID": "def"})
    assert r.status_code == 401 and r.headers["X-Request-ID"] == "def"
    r = client.post(gw.url + STREAM, json={"text": "x"}, headers={**auth(), "X-Request-ID": "g"})
    assert r.headers["X-Request-ID"] == "g"
    assert gw.worker.stream_requests[-1].headers["x-request-id"] == "g"


def test_metrics_names(gw, client):
    client.post(gw.url + STREAM, json={"text": "x"}, headers=auth())
    text = client.get(gw.url + "/metrics").text
    for name in ("orpheus_gateway_ttfa_seconds_bucket", "orpheus_gateway_streams_inflight",
                 "orpheus_gateway_queue_depth", "orpheus_gateway_upstream_failovers_total",
                 "orpheus_gateway_breaker_state", "orpheus_gateway_requests_total",
                 "orpheus_gateway_workers_ready"):
        assert name in text, name
    assert 'orpheus_gateway_streams_inflight{pool="default"} 0.0' in text
    client.post(gw.url + STREAM, json={"text": "x", "voice": "nobody"}, headers=auth())
    client.post(gw.url + STREAM, json={"text": "x"}, headers={"X-API-Key": "wrong"})
    text = client.get(gw.url + "/metrics").text
    assert 'orpheus_gateway_errors_total{code="unknown_voice"} 1.0' in text
    assert 'orpheus_gateway_errors_total{code="invalid_api_key"} 1.0' in text
    assert check_metrics(text) == ""  # Prometheus's own linter: names, types, help
    assert "http://" not in text and "request_id" not in text  # bounded labels


def test_an_oversized_request_head_is_refused(gw, client):
    """The shipped server settings (`server.server_settings`) bound the request head: over
    16 KiB is a 400. A 1 MiB header is refused the same way, though the client, still
    sending when the server closes, may see the connection reset before it reads the 400."""
    r = client.get(gw.url + "/v1/models", headers={**auth(), "X-Big": "a" * (32 << 10)})
    assert r.status_code in (400, 431), r.status_code
    try:
        r = client.get(gw.url + "/v1/models", headers={**auth(), "X-Big": "a" * (1 << 20)})
        assert r.status_code in (400, 431), r.status_code
    except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError):
        pass  # refused while sending: not served
    assert client.get(gw.url + "/v1/models", headers=auth()).status_code == 200
