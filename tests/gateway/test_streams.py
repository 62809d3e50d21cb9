"""Streams through a live gateway to fault-injecting fake workers (real HTTP on loopback)."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest

from orpheus_tts import protocol as p
from tests.gateway.conftest import auth
from tests.support.cycles import cycle_garbage
from tests.support.fake_server import Behaviour

STREAM = p.STREAM_PATH


def frames_of(response: httpx.Response) -> list[dict]:
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def assert_one_terminal(frames: list[dict]) -> dict:
    kinds = [f["type"] for f in frames]
    assert sum(k in p.TERMINAL_TYPES for k in kinds) == 1, kinds
    assert kinds[-1] in p.TERMINAL_TYPES, kinds
    return frames[-1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def served_by(srv, before: int) -> bool:
    return len(srv.stream_requests) > before


def test_passthrough_is_byte_exact_and_keeps_headers(fake_server, gateway_server, client):
    srv = fake_server(chunks=4, chunk_samples=960)
    gw = gateway_server([srv.url])
    gw.wait_polled()
    r = client.post(gw.url + STREAM, json={"text": "hello", "request_id": "req-42"},
                    headers=auth())
    assert r.status_code == 200
    assert r.headers["content-type"] == p.NDJSON
    assert r.headers[p.HEADER_REQUEST_ID] == "req-42"
    assert p.HEADER_QUEUE_DEPTH in r.headers and p.HEADER_INFLIGHT in r.headers
    frames = frames_of(r)
    assert_one_terminal(frames)["type"] == "eos"
    chunks = [p.ChunkFrame.model_validate(f) for f in frames if f["type"] == "chunk"]
    assert [c.seq for c in chunks] == [0, 1, 2, 3]
    assert b"".join(c.pcm() for c in chunks) == srv.expected_pcm(4)
    sent = srv.stream_requests[-1]
    assert sent.body["request_id"] == "req-42" and sent.body["text"] == "hello"
    assert 0 < sent.body["timeout_s"] <= p.DEFAULT_TIMEOUT_S  # the remaining deadline


def test_openai_alias_is_mapped_before_the_worker(fake_server, gateway_server, client):
    srv = fake_server()
    gw = gateway_server([srv.url])
    gw.wait_polled()
    r = client.post(gw.url + STREAM, json={"text": "hi", "voice": "alloy"}, headers=auth())
    assert r.status_code == 200
    assert srv.stream_requests[-1].body["voice"] == "tara"
    r = client.post(gw.url + STREAM, json={"text": "hi", "voice": "nobody"}, headers=auth())
    assert r.status_code == 400 and r.json()["error"]["code"] == p.ErrorCode.UNKNOWN_VOICE
    assert "tara" in r.json()["error"]["message"]


def test_killed_worker_gives_upstream_lost_then_next_request_goes_to_a_live_one(
        fake_server, gateway_server, client):
    dying = fake_server(chunks=50, chunk_delay_ms=20, tone=100)
    live = fake_server(chunks=3, tone=5000)
    gw = gateway_server([dying.url, live.url])
    gw.wait_polled()
    dying.queue_depth = 0
    live.queue_depth = 3  # steer the first stream to the worker we will kill
    assert gw.wait_until(lambda: gw.gateway.pool.get(live.url).hint_queue_depth == 3)

    lines: list[bytes] = []
    killer = threading.Thread(target=dying.stop)
    with client.stream("POST", gw.url + STREAM, json={"text": "long"}, headers=auth()) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            lines.append(line.encode())
            if len(lines) == 3:
                killer.start()  # the worker dies mid-stream
    killer.join()
    frames = [json.loads(x) for x in lines]
    last = assert_one_terminal(frames)
    assert last["type"] == "error" and last["code"] == p.ErrorCode.UPSTREAM_LOST
    assert last["retryable"] is True
    assert any(f["type"] == "chunk" for f in frames)

    before = len(live.stream_requests)
    r = client.post(gw.url + STREAM, json={"text": "again"}, headers=auth())
    assert r.status_code == 200 and assert_one_terminal(frames_of(r))["type"] == "eos", r.text
    assert served_by(live, before)


@pytest.mark.parametrize("behaviour", [Behaviour.drop(after=2), Behaviour.eof(after=2)],
                         ids=["connection-dropped", "body-ended-without-terminal"])
def test_broken_stream_ends_with_exactly_one_upstream_lost(behaviour, fake_server,
                                                           gateway_server, client):
    srv = fake_server()
    srv.script(behaviour)
    gw = gateway_server([srv.url])
    gw.wait_polled()
    frames = frames_of(client.post(gw.url + STREAM, json={"text": "x"}, headers=auth()))
    assert [f["type"] for f in frames if f["type"] == "chunk"] == ["chunk", "chunk"]
    assert assert_one_terminal(frames)["code"] == p.ErrorCode.UPSTREAM_LOST


def test_worker_error_frame_is_passed_through_once(fake_server, gateway_server, client):
    srv = fake_server()
    srv.script(Behaviour.error(p.ErrorCode.ENGINE_ERROR, after=1, message="boom"))
    gw = gateway_server([srv.url])
    gw.wait_polled()
    frames = frames_of(client.post(gw.url + STREAM, json={"text": "x"}, headers=auth()))
    last = assert_one_terminal(frames)
    assert last["code"] == p.ErrorCode.ENGINE_ERROR and last["message"] == "boom"


def test_stall_hits_the_deadline(fake_server, gateway_server, client):
    srv = fake_server()
    srv.script(Behaviour.stall(after=1))
    gw = gateway_server([srv.url])
    gw.wait_polled()
    r = client.post(gw.url + STREAM, json={"text": "x", "timeout_s": 2.0}, headers=auth())
    frames = frames_of(r)
    assert frames[0]["type"] == "chunk"
    assert assert_one_terminal(frames)["code"] == p.ErrorCode.DEADLINE_EXCEEDED
    assert srv.wait_until(lambda: srv.cancelled_streams == 1)  # the stalled stream was closed


def test_stall_before_first_chunk_hits_the_deadline(fake_server, gateway_server, client):
    srv = fake_server()
    srv.script(Behaviour.stall(after=0))
    gw = gateway_server([srv.url])
    gw.wait_polled()
    frames = frames_of(client.post(gw.url + STREAM, json={"text": "x", "timeout_s": 0.4},
                                   headers=auth()))
    assert [f["type"] for f in frames] == ["error"]
    assert frames[0]["code"] == p.ErrorCode.DEADLINE_EXCEEDED


def test_timeout_is_capped_by_max_timeout(fake_server, gateway_server, client):
    srv = fake_server()
    gw = gateway_server([srv.url], max_timeout_s=2.0)
    gw.wait_polled()
    client.post(gw.url + STREAM, json={"text": "x", "timeout_s": 1000}, headers=auth())
    assert srv.stream_requests[-1].body["timeout_s"] <= 2.0


@pytest.mark.parametrize("failure", [
    Behaviour.http_error(503, p.ErrorCode.OVERLOADED, retry_after_s=5),
    Behaviour.http_error(500, p.ErrorCode.INTERNAL, retry_after_s=None),
    Behaviour.error(p.ErrorCode.OVERLOADED, after=0),
    Behaviour.drop(after=0),
], ids=["503-retry-after", "500", "retryable-error-first", "dropped-before-first-frame"])
def test_failover_before_the_first_byte(failure, fake_server, gateway_server, client):
    bad = fake_server(tone=100)
    good = fake_server(tone=7000)
    gw = gateway_server([bad.url, good.url])
    gw.wait_polled()
    bad.script(failure)
    good.queue_depth = 2  # the bad worker looks better: it gets the first try
    assert gw.wait_until(lambda: gw.gateway.pool.get(good.url).hint_queue_depth == 2)
    r = client.post(gw.url + STREAM, json={"text": "x"}, headers=auth())
    frames = frames_of(r)
    assert r.status_code == 200 and assert_one_terminal(frames)["type"] == "eos"
    chunks = [p.ChunkFrame.model_validate(f) for f in frames if f["type"] == "chunk"]
    assert b"".join(c.pcm() for c in chunks) == good.expected_pcm(3)  # all from one worker
    assert len(bad.stream_requests) == 1 and len(good.stream_requests) == 1
    metrics = client.get(gw.url + "/metrics").text
    assert "orpheus_gateway_upstream_failovers_total 1.0" in metrics


def test_failover_on_connection_refused(fake_server, gateway_server, client):
    good = fake_server()
    dead_url = f"http://127.0.0.1:{free_port()}"
    gw = gateway_server([dead_url, good.url], poll_interval_s=30)  # no poll marks it down
    for _ in range(6):
        r = client.post(gw.url + STREAM, json={"text": "x"}, headers=auth())
        assert r.status_code == 200 and assert_one_terminal(frames_of(r))["type"] == "eos"
    assert len(good.stream_requests) == 6


def test_no_failover_after_the_first_byte(fake_server, gateway_server, client):
    a, b = fake_server(), fake_server()
    a.script(Behaviour.drop(after=1))
    b.script(Behaviour.drop(after=1))
    gw = gateway_server([a.url, b.url])
    gw.wait_polled()
    frames = frames_of(client.post(gw.url + STREAM, json={"text": "x"}, headers=auth()))
    assert assert_one_terminal(frames)["code"] == p.ErrorCode.UPSTREAM_LOST
    assert len(a.stream_requests) + len(b.stream_requests) == 1


def test_all_workers_refusing_is_a_503_with_retry_after(fake_server, gateway_server, client):
    """With holding off (`--max-pending 0`); tests/gateway/test_hold.py covers holding."""
    a, b = fake_server(), fake_server()
    for srv in (a, b):
        srv.script(Behaviour.http_error(503, p.ErrorCode.OVERLOADED, retry_after_s=3))
    gw = gateway_server([a.url, b.url], max_pending=0)
    gw.wait_polled()
    r = client.post(gw.url + STREAM, json={"text": "x"}, headers=auth())
    assert r.status_code == 503
    assert r.json()["error"]["code"] == p.ErrorCode.NO_WORKERS
    assert int(r.headers["Retry-After"]) >= 1
    # Both are cooling down for their Retry-After: nothing to try now.
    r = client.post(gw.url + STREAM, json={"text": "x"}, headers=auth())
    assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 2
    assert len(a.stream_requests) == 1 and len(b.stream_requests) == 1


def test_worker_4xx_is_passed_to_the_client_without_failover(fake_server, gateway_server,
                                                               client):
    a, b = fake_server(), fake_server()
    a.script(Behaviour.http_error(400, p.ErrorCode.INVALID_REQUEST, retry_after_s=None))
    b.script(Behaviour.http_error(400, p.ErrorCode.INVALID_REQUEST, retry_after_s=None))
    gw = gateway_server([a.url, b.url])
    gw.wait_polled()
    r = client.post(gw.url + STREAM, json={"text": "x"}, headers=auth())
    assert r.status_code == 400 and r.json()["error"]["code"] == p.ErrorCode.INVALID_REQUEST
    assert len(a.stream_requests) + len(b.stream_requests) == 1


def test_breaker_opens_on_a_failing_worker_then_recovers(fake_server, gateway_server, client):
    flaky = fake_server()
    steady = fake_server()
    gw = gateway_server([flaky.url, steady.url], breaker_failures=2, breaker_reset_s=3.0,
                        max_attempts=1)
    gw.wait_polled()
    flaky.default = Behaviour.error(p.ErrorCode.ENGINE_ERROR, after=1)
    steady.queue_depth = 2  # flaky looks idle, so it is chosen until its breaker opens
    assert gw.wait_until(lambda: gw.gateway.pool.get(steady.url).hint_queue_depth == 2)
    codes = []
    for _ in range(4):
        frames = frames_of(client.post(gw.url + STREAM, json={"text": "x"}, headers=auth()))
        codes.append(assert_one_terminal(frames).get("code", "eos"))
    assert codes[:2] == [p.ErrorCode.ENGINE_ERROR] * 2 and codes[2:] == ["eos", "eos"]
    assert len(flaky.stream_requests) == 2
    system = client.get(gw.url + p.SYSTEM_PATH, headers=auth()).json()
    state = {w["url"]: w["breaker"] for w in system["workers"]}
    assert state[flaky.url] == "open" and state[steady.url] == "closed"
    metrics = client.get(gw.url + "/metrics").text
    assert f'orpheus_gateway_breaker_state{{worker_id="{flaky.worker_id}"}} 2.0' in metrics
    assert f'orpheus_gateway_breaker_state{{worker_id="{steady.worker_id}"}} 0.0' in metrics
    assert "http://" not in metrics  # bounded labels: ids, never URLs

    flaky.default = Behaviour.normal()
    time.sleep(3.1)  # the breaker's reset period: half-open, one trial
    frames = frames_of(client.post(gw.url + STREAM, json={"text": "x"}, headers=auth()))
    assert assert_one_terminal(frames)["type"] == "eos"
    assert len(flaky.stream_requests) == 3  # the trial went to it, and succeeded
    system = client.get(gw.url + p.SYSTEM_PATH, headers=auth()).json()
    assert {w["url"]: w["breaker"] for w in system["workers"]}[flaky.url] == "closed"


def test_least_loaded_routing_follows_worker_hints(fake_server, gateway_server, client):
    idle, busy = fake_server(), fake_server(queue_depth=6)
    gw = gateway_server([idle.url, busy.url])
    assert gw.wait_until(lambda: gw.gateway.pool.get(busy.url).hint_queue_depth == 6)
    for _ in range(10):
        client.post(gw.url + STREAM, json={"text": "x"}, headers=auth())
    assert len(idle.stream_requests) == 10 and not busy.stream_requests


def test_power_of_two_choices_never_picks_the_most_loaded(fake_server, gateway_server, client):
    # Of any two sampled workers the less loaded wins, so the busiest one never gets a stream
    # while the others share them.
    low, mid, high = fake_server(), fake_server(queue_depth=3), fake_server(queue_depth=6)
    gw = gateway_server([low.url, mid.url, high.url])
    assert gw.wait_until(lambda: gw.gateway.pool.get(high.url).hint_queue_depth == 6
                         and gw.gateway.pool.get(mid.url).hint_queue_depth == 3)
    for _ in range(30):
        client.post(gw.url + STREAM, json={"text": "x"}, headers=auth())
    assert not high.stream_requests
    assert len(low.stream_requests) + len(mid.stream_requests) == 30


def test_concurrent_streams_spread_by_own_inflight(fake_server, gateway_server):
    a, b = fake_server(chunks=40, chunk_delay_ms=50), fake_server(chunks=40, chunk_delay_ms=50)
    a.inflight = b.inflight = 0  # hints say idle; only the gateway's own count differs
    gw = gateway_server([a.url, b.url])
    gw.wait_polled()

    def one() -> None:
        with httpx.Client(timeout=20) as c:
            c.post(gw.url + STREAM, json={"text": "x"}, headers=auth())

    def open_streams() -> int:
        return sum(w.local_inflight for w in gw.gateway.pool)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for i, t in enumerate(threads):
        t.start()
        assert gw.wait_until(lambda: open_streams() == i + 1)  # one at a time, all still open
    assert a.wait_until(lambda: len(a.stream_requests) + len(b.stream_requests) == 6)
    assert len(a.stream_requests) == 3 and len(b.stream_requests) == 3
    for t in threads:
        t.join()


def test_not_ready_worker_gets_no_new_streams(fake_server, gateway_server, client):
    draining, other = fake_server(), fake_server()
    gw = gateway_server([draining.url, other.url], max_pending=0)
    gw.wait_polled()
    draining.ready = False
    assert gw.wait_until(lambda: not gw.gateway.pool.get(draining.url).ready)
    for _ in range(5):
        client.post(gw.url + STREAM, json={"text": "x"}, headers=auth())
    assert not draining.stream_requests and len(other.stream_requests) == 5
    other.ready = False
    assert gw.wait_until(lambda: not gw.gateway.pool.get(other.url).ready)
    # The gateway's readiness is its own: it stays in its Service and answers clearly.
    ready = client.get(gw.url + "/readyz")
    assert ready.status_code == 200 and ready.json()["workers_ready"] == 0
    r = client.post(gw.url + STREAM, json={"text": "x"}, headers=auth())
    assert r.status_code == 503 and r.json()["error"]["code"] == p.ErrorCode.NO_WORKERS


def test_client_disconnect_mid_stream_closes_the_upstream(fake_server, gateway_server, client):
    srv = fake_server(chunks=500, chunk_delay_ms=20)
    gw = gateway_server([srv.url])
    gw.wait_polled()
    with client.stream("POST", gw.url + STREAM, json={"text": "x"}, headers=auth()) as r:
        for i, _ in enumerate(r.iter_lines()):
            if i == 2:
                break  # leaving the block closes the connection mid-stream
    assert srv.wait_until(lambda: srv.cancelled_streams == 1, timeout=5)
    assert srv.open_streams == 0
    assert gw.wait_until(lambda: all(w.local_inflight == 0 for w in gw.gateway.pool))


def test_client_disconnect_before_first_audio_closes_the_upstream(fake_server, gateway_server):
    srv = fake_server()
    srv.script(Behaviour.stall(after=0))
    gw = gateway_server([srv.url])
    gw.wait_polled()
    with httpx.Client(timeout=2.0) as c:
        with pytest.raises(httpx.ReadTimeout):
            c.post(gw.url + STREAM, json={"text": "x"}, headers=auth())
    assert srv.wait_until(lambda: srv.cancelled_streams == 1, timeout=5)
    assert gw.wait_until(lambda: all(w.local_inflight == 0 for w in gw.gateway.pool))


def test_finished_streams_are_freed_without_the_cycle_collector(fake_server, gateway_server,
                                                               client):
    """A stream's objects (the server's request cycle and scope, the worker response, the relay,
    the client watch) must not hold each other in a cycle: the cycle collector would then walk
    the whole heap for them, which cost the gateway a seventh of its CPU per request."""
    srv = fake_server(chunks=3, chunk_samples=240)
    gw = gateway_server([srv.url])
    gw.wait_polled()
    requests = [(STREAM, {"text": "warm"})] + [(STREAM, {"text": f"t {i}"}) for i in range(4)] \
        + [(p.SPEECH_PATH, {"model": "tts-1", "input": "hi", "voice": "tara",
                            "response_format": "pcm"})] * 2
    with cycle_garbage() as left:
        for path, body in requests:
            assert client.post(gw.url + path, json=body, headers=auth()).status_code == 200
        # a client that leaves mid-stream too
        with client.stream("POST", gw.url + STREAM, json={"text": "x"}, headers=auth()) as r:
            next(r.iter_lines())
        assert gw.wait_until(lambda: all(w.local_inflight == 0 for w in gw.gateway.pool))
    assert not left, left


def test_system_snapshot_for_the_autoscaler(fake_server, gateway_server, client):
    a, b = fake_server(queue_depth=2, capacity=4), fake_server(queue_depth=1, capacity=6)
    gw = gateway_server([a.url, b.url])
    assert gw.wait_until(lambda: gw.gateway.pool.get(a.url).hint_queue_depth == 2
                         and gw.gateway.pool.get(b.url).hint_queue_depth == 1)
    for _ in range(3):
        client.post(gw.url + STREAM, json={"text": "x"}, headers=auth())
    snap = p.SystemSnapshot.model_validate(client.get(gw.url + p.SYSTEM_PATH, headers=auth()).json())
    assert snap.role == "gateway" and snap.ready
    assert snap.queue_depth == 3 and snap.capacity == 10
    assert snap.ttfa_p50_ms is not None and snap.ttfa_p95_ms >= snap.ttfa_p50_ms
    assert {w.url for w in snap.workers} == {a.url, b.url}
    assert all(w.breaker == "closed" and w.ready for w in snap.workers)
    metrics = client.get(gw.url + "/metrics").text
    assert 'orpheus_gateway_queue_depth{pool="default"} 3.0' in metrics
    assert 'orpheus_gateway_capacity{pool="default"} 10.0' in metrics
    assert 'orpheus_gateway_ttfa_seconds_count{api="v1",pool="default"} 3.0' in metrics
    [pool] = snap.pools
    assert (pool.name, pool.default, pool.queue_depth, pool.capacity) == ("default", True, 3, 10)
    assert pool.workers == pool.workers_ready == 2 and pool.ttfa_p50_ms == snap.ttfa_p50_ms


def test_gateway_queue_counts_only_requests_no_worker_has_accepted(fake_server, gateway_server):
    srv = fake_server(queue_depth=0, inflight=None)
    gw = gateway_server([srv.url], max_attempts=1, max_pending=0)  # a 503 is final here
    gw.wait_polled()
    srv.script(Behaviour.http_error(503, first_delay_s=1.0, retry_after_s=1),  # head delayed
               Behaviour.normal(chunks=2, first_delay_s=3.0))  # accepted, slow first audio
    results: list[int] = []

    def one() -> None:
        with httpx.Client(timeout=20) as c:
            results.append(c.post(gw.url + STREAM, json={"text": "x"}, headers=auth()
                                  ).status_code)

    for expected_queue in (1, 0):
        t = threading.Thread(target=one)
        t.start()
        assert srv.wait_until(lambda: len(srv.stream_requests) == 2 - expected_queue)
        # Well before the slow first audio: only the response head can have been seen.
        assert gw.wait_until(lambda: gw.gateway.queue_depth() == expected_queue, timeout=2.0)
        t.join()
        srv.wait_until(lambda: srv.open_streams == 0)
        time.sleep(1.1)  # the 503's Retry-After cooldown
    assert results == [503, 200]
