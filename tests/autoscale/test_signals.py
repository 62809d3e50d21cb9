"""Reading the gateway's /v1/system (and Prometheus) over real loopback HTTP."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from orpheus_operator.autoscaler.signals import (
    GatewaySource,
    PrometheusSource,
    SignalsUnauthorized,
    SignalsUnavailable,
    signals_from_snapshot,
)
from orpheus_tts.protocol import SystemSnapshot, WorkerState
from tests.autoscale.fake_gateway import FakeGateway, gateway_snapshot


@pytest.fixture
def gateway() -> Iterator[FakeGateway]:
    with FakeGateway() as fake:
        yield fake


def test_reads_the_gateway_snapshot(gateway: FakeGateway) -> None:
    gateway.snapshot = gateway_snapshot(queue=12, inflight=20, ready=3, capacity=8, p95_ms=1500.0)
    signals = GatewaySource(gateway.url).read(now=42.0, ready_fallback=0)
    assert (signals.queue_depth, signals.inflight, signals.ready_workers) == (12, 20, 3)
    assert signals.capacity == 24 and signals.ttfa_p95_ms == 1500.0 and signals.time == 42.0
    assert signals.window_s == 30.0


def test_reads_an_authenticating_gateway_with_the_system_key() -> None:
    with FakeGateway(gateway_snapshot(queue=3), keys=["sys-key"]) as fake:
        assert GatewaySource(fake.url, api_key="sys-key").read(0.0, 0).queue_depth == 3
        for key in (None, "wrong"):
            with pytest.raises(SignalsUnauthorized, match="401"):
                GatewaySource(fake.url, api_key=key).read(0.0, 0)


def test_accepts_a_url_that_already_names_the_path(gateway: FakeGateway) -> None:
    assert GatewaySource(gateway.url + "/v1/system").read(0.0, 0).ready_workers == 1


@pytest.mark.parametrize("status,body", [(500, None), (200, b"not json"), (200, b'{"role": 1}')])
def test_a_bad_answer_is_unavailable_not_a_crash(gateway: FakeGateway, status: int,
                                                  body: bytes | None) -> None:
    gateway.status, gateway.body_override = status, body
    with pytest.raises(SignalsUnavailable):
        GatewaySource(gateway.url).read(0.0, 0)


def test_an_unreachable_gateway_is_unavailable() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(SignalsUnavailable, match="ConnectError"):
        GatewaySource(f"http://127.0.0.1:{port}", timeout_s=2.0).read(0.0, 0)


def test_only_routable_workers_count_as_ready() -> None:
    snapshot = SystemSnapshot(role="gateway", ready=True, queue_depth=1, inflight=2, workers=[
        WorkerState(id="a", url="u", ready=True, capacity=8),
        WorkerState(id="b", url="u", ready=False, capacity=8),
        WorkerState(id="c", url="u", ready=True, capacity=8, breaker="open"),
    ])
    signals = signals_from_snapshot(snapshot, 0.0, ready_fallback=5)
    assert signals.ready_workers == 1 and signals.capacity == 8


def test_a_gateway_without_a_worker_list_falls_back_to_the_deployment() -> None:
    snapshot = SystemSnapshot(role="gateway", ready=True, queue_depth=3, capacity=16)
    signals = signals_from_snapshot(snapshot, 0.0, ready_fallback=2)
    assert signals.ready_workers == 2 and signals.capacity == 16


def test_prometheus_source() -> None:
    answers = {
        "sum(orpheus_gateway_queue_depth)": "7",
        "sum(orpheus_gateway_streams_inflight)": "15",
        "sum(orpheus_gateway_workers_ready)": "3",
    }
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            query = parse_qs(urlparse(self.path).query)["query"][0]
            seen.append(query)
            value = "1234.5" if "histogram_quantile" in query else answers.get(query)
            result = [] if value is None else [{"metric": {}, "value": [0, value]}]
            body = json.dumps({"status": "success",
                               "data": {"resultType": "vector", "result": result}}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        signals = PrometheusSource(f"http://{host}:{port}").read(now=1.0, ready_fallback=9)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert (signals.queue_depth, signals.inflight, signals.ready_workers) == (7, 15, 3)
    assert signals.ttfa_p95_ms == 1234.5 and signals.capacity is None
    assert len(seen) == 4
