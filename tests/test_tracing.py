"""OpenTelemetry traces: off unless configured, and one request's span tree across SDK →
gateway → worker → engine (real components, OpenTelemetry's in-memory exporter)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orpheus_tts import tracing
from tests.support.trace_harness import REQUEST_ID

ROOT = Path(__file__).resolve().parents[1]


def test_tracing_is_off_unless_an_endpoint_is_configured():
    assert tracing.available()
    assert tracing.configure("x", environ={}) is False
    assert tracing.configure("x", environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                                           "OTEL_SDK_DISABLED": "true"}) is False
    headers = tracing.inject({})  # no span: nothing to propagate
    assert "traceparent" not in headers


def test_without_a_provider_spans_cost_nothing_and_a_callers_trace_passes_through():
    from opentelemetry import context, propagate, trace
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider), \
        "a test installed a tracer provider in this process: such tests run in a subprocess"
    assert not tracing.recording()
    with tracing.span("gateway.admission") as s:
        assert s is tracing.NO_SPAN
    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    token = context.attach(propagate.extract({"traceparent": caller}))
    try:
        with tracing.use(tracing.start_span("gateway.upstream")):
            assert tracing.inject({})["traceparent"] == caller
    finally:
        context.detach(token)


@pytest.mark.engine
def test_one_request_is_one_trace_from_sdk_to_engine(tiny_model):
    run = subprocess.run([sys.executable, "-m", "tests.support.trace_harness", str(tiny_model)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    lines = [ln for ln in run.stdout.splitlines() if ln.startswith("SPANS ")]
    assert run.returncode == 0 and lines, run.stdout[-3000:] + run.stderr[-3000:]
    spans = json.loads(lines[-1][len("SPANS "):])
    by_name = {}
    for s in spans:
        assert s["name"] not in by_name, f"{s['name']} twice"
        by_name[s["name"]] = s
    parent = {s["name"]: next((p["name"] for p in spans if p["span_id"] == s["parent_id"]), None)
              for s in spans}
    assert parent == {
        "sdk.stream": None,
        "gateway.stream": "sdk.stream",
        "gateway.admission": "gateway.stream",
        "gateway.upstream": "gateway.stream",
        "worker.stream": "gateway.upstream",
        "worker.admission": "worker.stream",
        "worker.queue_wait": "worker.stream",
        "engine.generate": "worker.stream",
        "engine.first_token": "engine.generate",
        "snac.first_decode": "engine.generate",
    }
    assert len({s["trace_id"] for s in spans}) == 1
    for name in ("sdk.stream", "gateway.stream", "worker.stream", "engine.generate"):
        assert by_name[name]["attributes"][tracing.REQUEST_ID] == REQUEST_ID, name
        assert by_name[name]["status"] != "ERROR", name
    assert by_name["sdk.stream"]["kind"] == "CLIENT"
    assert by_name["gateway.stream"]["kind"] == by_name["worker.stream"]["kind"] == "SERVER"
    assert "first_audio" in by_name["sdk.stream"]["events"]
    assert "first_chunk_sent" in by_name["gateway.stream"]["events"]
    assert "first_chunk_sent" in by_name["worker.stream"]["events"]
    assert by_name["gateway.upstream"]["attributes"]["orpheus.worker_id"]
    assert by_name["worker.admission"]["attributes"]["orpheus.queued"] is False
    assert by_name["engine.generate"]["attributes"]["orpheus.tokens"] > 0
    # time order: the first token before the first decode's end, the decode inside the stream
    assert by_name["engine.first_token"]["end"] <= by_name["snac.first_decode"]["end"]
    assert by_name["worker.stream"]["start"] <= by_name["snac.first_decode"]["start"]
