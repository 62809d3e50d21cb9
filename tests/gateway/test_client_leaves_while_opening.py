"""A client that leaves while its stream is being opened — the worker not yet answering, no
worker to hold for, failing over, or the deadline passing that moment — on the v1 stream and
the OpenAI speech route: the worker request is cancelled, every count comes back (the worker's
in-flight, the gateway's queue and holds, the key's stream slot), and the log has no ERROR.
Raw sockets: the client leaves at a chosen moment, with its whole body sent."""

from __future__ import annotations

import json
import logging
import socket
import time

import pytest

from orpheus_tts import protocol as p
from tests.gateway.conftest import API_KEY, auth
from tests.support.cycles import cycle_garbage
from tests.support.fake_server import Behaviour

BODIES = {p.STREAM_PATH: {"text": "hello there"},
          p.SPEECH_PATH: {"model": "tts-1", "input": "hello there", "voice": "tara",
                          "response_format": "pcm"}}
ROUTES = pytest.mark.parametrize("path", list(BODIES))


def post_and_keep_open(gw, path: str) -> socket.socket:
    raw = json.dumps(BODIES[path]).encode()
    s = socket.create_connection(("127.0.0.1", gw.port))
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n"
              f"Content-Type: application/json\r\nContent-Length: {len(raw)}\r\n\r\n".encode()
              + raw)
    return s


def assert_all_given_back(gw, workers) -> None:
    up = gw.gateway.pools.default.upstream
    key = gw.gateway.keys.identify(API_KEY)

    def state():
        return ([w.local_inflight for w in gw.gateway.pool], up.held, up.waiting,
                gw.gateway.limiter.active_streams(key))

    assert gw.wait_until(lambda: state() == ([0] * len(workers), 0, 0, 0)), gw.call(state)
    for w in workers:
        assert w.wait_until(lambda: w.open_streams == 0), w.stats()


def assert_no_error_logged(caplog) -> None:
    bad = [(r.name, r.getMessage()) for r in caplog.records
           if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, bad


@ROUTES
def test_leaving_before_the_worker_answers(path, fake_server, gateway_server, client, caplog):
    worker = fake_server(default=Behaviour.normal(first_delay_s=30))
    gw = gateway_server([worker.url], max_streams_per_key=1)
    gw.wait_polled()
    for i in range(2):
        s = post_and_keep_open(gw, path)
        assert worker.wait_until(lambda: len(worker.stream_requests) == i + 1)
        s.close()
        assert_all_given_back(gw, [worker])
    worker.default = Behaviour.normal()
    assert client.post(gw.url + path, json=BODIES[path], headers=auth()).status_code == 200
    assert_no_error_logged(caplog)


@ROUTES
def test_leaving_while_held_for_a_worker(path, fake_server, gateway_server, client, caplog):
    worker = fake_server(ready=False)
    gw = gateway_server([worker.url], max_streams_per_key=1)
    gw.wait_polled()
    s = post_and_keep_open(gw, path)
    assert gw.wait_until(lambda: gw.gateway.pools.default.upstream.held == 1)
    s.close()
    assert_all_given_back(gw, [worker])
    worker.ready = True
    assert gw.wait_until(lambda: all(w.ready for w in gw.gateway.pool))
    assert client.post(gw.url + path, json=BODIES[path], headers=auth()).status_code == 200
    assert not worker.stream_requests[:-1]  # the one that left never reached the worker
    assert_no_error_logged(caplog)


@ROUTES
def test_leaving_while_failing_over(path, fake_server, gateway_server, caplog):
    busy = Behaviour.error(p.ErrorCode.OVERLOADED, first_delay_s=0.5)
    a, b = fake_server(default=busy), fake_server(default=busy)
    gw = gateway_server([a.url, b.url], max_streams_per_key=1)
    gw.wait_polled()
    s = post_and_keep_open(gw, path)
    assert gw.wait_until(lambda: len(a.stream_requests) + len(b.stream_requests) == 2)
    s.close()  # while the second worker is being tried
    assert_all_given_back(gw, [a, b])
    assert_no_error_logged(caplog)


@ROUTES
@pytest.mark.parametrize("ready", [True, False], ids=["opening", "held"])
def test_leaving_as_the_deadline_passes(path, ready, fake_server, gateway_server, caplog):
    worker = fake_server(ready=ready, default=Behaviour.normal(first_delay_s=5))
    gw = gateway_server([worker.url], max_streams_per_key=1, default_timeout_s=1.0)
    gw.wait_polled()
    s = post_and_keep_open(gw, path)
    time.sleep(1.0)
    s.close()
    assert_all_given_back(gw, [worker])
    assert_no_error_logged(caplog)


@pytest.mark.parametrize("ready", [True, False], ids=["opening", "held"])
def test_a_request_whose_client_left_is_freed_by_reference_counting(ready, fake_server,
                                                                    gateway_server, client):
    """Like `test_finished_streams_are_freed_without_the_cycle_collector`, for the request
    `open_watched` answers 204 because the client left (the expired cancel scope, the
    exceptions it turned into TimeoutError)."""
    worker = fake_server(ready=ready, default=Behaviour.normal(first_delay_s=30))
    gw = gateway_server([worker.url])
    gw.wait_polled()
    up = gw.gateway.pools.default.upstream
    busy = (lambda: sum(w.local_inflight for w in gw.gateway.pool) == 1) if ready else \
        (lambda: up.held == 1)
    idle = lambda: up.waiting == up.held == 0 and all(w.local_inflight == 0  # noqa: E731
                                                      for w in gw.gateway.pool)
    s = post_and_keep_open(gw, p.STREAM_PATH)  # warm: the first request's one-off objects
    assert gw.wait_until(busy)
    s.close()
    assert gw.wait_until(idle)
    with cycle_garbage() as left:
        for path in BODIES:
            s = post_and_keep_open(gw, path)
            assert gw.wait_until(busy)
            s.close()
            assert gw.wait_until(idle)
    assert not left, left
