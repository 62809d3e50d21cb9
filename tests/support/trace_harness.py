"""One request through SDK → gateway → worker → engine in one process, traced in memory.

`python -m tests.support.trace_harness MODEL_DIR` starts a real worker (WorkerService, vLLM on
the stand-in checkpoint, SNAC) and a real gateway (auth on) on loopback ports inside this
process, with OpenTelemetry's `InMemorySpanExporter` as the only exporter, streams one request
through the SDK, and prints the finished spans as JSON (one process, so one exporter sees every
hop; the hops still talk HTTP with `traceparent` headers). tests/test_tracing.py runs it in a
subprocess to keep vLLM out of the test process.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
import tempfile
from pathlib import Path

from tests.support.worker_proc import TINY_WORKER_ARGS, WORKER_ENV

os.environ.update(WORKER_ENV)

REQUEST_ID = "trace-one-request"


def install_memory_exporter():
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


async def serve(app, **kwargs) -> tuple[object, asyncio.Task, int]:
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           **kwargs))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            await task
            raise RuntimeError("server did not start")
        await asyncio.sleep(0.02)
    return server, task, server.servers[0].sockets[0].getsockname()[1]


async def run(model_dir: Path) -> list[dict]:
    exporter = install_memory_exporter()
    import httpx

    from orpheus_gateway.app import create_app as gateway_app
    from orpheus_gateway.config import config_from_args
    from orpheus_tts.sdk import OrpheusTTS
    from orpheus_worker.app import create_app as worker_app
    from orpheus_worker.config import parse_args
    from orpheus_worker.engine import OrpheusEngine
    from orpheus_worker.service import WorkerService

    cfg = parse_args(["--model", str(model_dir / "llm"), "--snac", str(model_dir / "snac"),
                      "--worker-id", "w-trace", *TINY_WORKER_ARGS])
    service = WorkerService(cfg)
    worker, worker_task, worker_port = await serve(worker_app(service), lifespan="off")
    service.engine = await OrpheusEngine.start(cfg, service.metrics)
    key = "sk-trace-" + secrets.token_urlsafe(12)
    keys = Path(tempfile.mkdtemp()) / "keys"
    keys.write_text(key + "\n")
    gw_cfg = config_from_args(["--workers", f"http://127.0.0.1:{worker_port}",
                               "--api-keys-file", str(keys)])
    gateway, gateway_task, gateway_port = await serve(gateway_app(gw_cfg))
    url = f"http://127.0.0.1:{gateway_port}"
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(200):
                r = await client.get(url + "/v1/system", headers={"Authorization": f"Bearer {key}"})
                if r.status_code == 200 and r.json()["ready"]:
                    break
                await asyncio.sleep(0.1)
        exporter.clear()  # only the request's spans
        async with OrpheusTTS([url], api_key=key, hedge_ttfb_ms=None, timeout_s=120) as tts:
            stream = tts.stream("Hello there.", voice="tara", request_id=REQUEST_ID)
            pcm = b"".join([chunk async for chunk in stream])
        assert pcm, "no audio"
        await asyncio.sleep(0.2)  # the worker's generator closes its span after the last line
    finally:
        gateway.should_exit = True
        await gateway_task
        await service.engine.shutdown()
        worker.should_exit = True
        await worker_task
    return [{
        "name": s.name, "trace_id": f"{s.context.trace_id:032x}",
        "span_id": f"{s.context.span_id:016x}",
        "parent_id": f"{s.parent.span_id:016x}" if s.parent else None,
        "kind": s.kind.name, "status": s.status.status_code.name,
        "attributes": dict(s.attributes or {}),
        "events": [e.name for e in s.events],
        "start": s.start_time, "end": s.end_time,
    } for s in exporter.get_finished_spans()]


if __name__ == "__main__":
    spans = asyncio.run(run(Path(sys.argv[1])))
    print("SPANS " + json.dumps(spans), flush=True)
