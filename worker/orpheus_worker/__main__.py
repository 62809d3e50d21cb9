"""`orpheus-tts worker` / `python -m orpheus_worker`: serve until SIGTERM, then drain and exit 0.

Startup: the HTTP server binds first (`/healthz` answers, `/readyz` is 503 while loading), the
engine loads, then one line `orpheus-worker ready: http://HOST:PORT` is printed. On SIGTERM or
SIGINT `/readyz` fails at once, new streams get 503 `draining` with `Retry-After`, inflight
streams may finish for `--drain-seconds`, then the server and the engine stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Iterator

import uvicorn

from orpheus_tts import tracing

from .app import create_app
from .config import WorkerConfig, parse_args
from .engine import OrpheusEngine
from .service import WorkerService
from .voices import load_voice_set

log = logging.getLogger("orpheus_worker")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the worker drains first."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(cfg: WorkerConfig) -> int:
    tracing.configure("orpheus-worker")
    service = WorkerService(cfg)
    app = create_app(service)
    server = _Server(uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level="warning",
                                    lifespan="off", timeout_graceful_shutdown=5))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    server_task = asyncio.create_task(server.serve(), name="http")
    while not server.started:
        if server_task.done():
            await server_task
            print("orpheus-worker: HTTP server failed to start", file=sys.stderr, flush=True)
            return 1
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    cfg.port = port
    if cfg.worker_id is None:
        service.worker_id = cfg.resolved_worker_id

    load = asyncio.create_task(OrpheusEngine.start(cfg, service.metrics), name="engine-load")
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({load, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if not load.done():
        load.cancel()
        server.should_exit = True
        await server_task
        return 0
    try:
        service.engine = load.result()
    except Exception:
        log.exception("engine failed to start")
        server.should_exit = True
        await server_task
        return 1
    print(f"orpheus-worker ready: http://{cfg.host}:{port} (id {service.worker_id}, "
          f"model {cfg.model})", flush=True)

    await stopper
    service.start_drain()
    print(f"orpheus-worker draining: {service.admission.inflight} inflight, "
          f"up to {cfg.drain_seconds:g} s", flush=True)
    idle = await service.wait_idle(cfg.drain_seconds)
    if not idle:
        cut = service.cut_streams()
        print(f"orpheus-worker: drain timeout, ended {cut} stream(s) with a draining error",
              flush=True)
        await service.wait_idle(5)
    server.should_exit = True
    await server_task
    await service.engine.shutdown()
    print("orpheus-worker stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        load_voice_set(cfg.voices)
    except (ValueError, OSError, KeyError) as exc:
        print(f"orpheus-tts worker: --voices: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return asyncio.run(serve(cfg))


if __name__ == "__main__":
    sys.exit(main())
