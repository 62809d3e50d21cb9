"""A tiny real HTTP server on loopback that answers `GET /v1/system` like a gateway.

Tests set `.snapshot` (an `orpheus_tts.protocol.SystemSnapshot`) or `.status` (to fail) at any
time; `.url` is the base URL; `.hits` counts the requests. Like the real gateway with auth on,
it answers 401 unless the request brings one of `keys` (`Authorization: Bearer`); `keys=None`
is a gateway run with `--no-auth`. Stdlib only, one daemon thread, stopped by `close()` (or
the context manager).
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from orpheus_tts.protocol import SYSTEM_PATH, SystemSnapshot, WorkerState


def gateway_snapshot(queue: int = 0, inflight: int = 0, ready: int = 1, capacity: int = 8,
                     p95_ms: float | None = 300.0) -> SystemSnapshot:
    workers = [WorkerState(id=f"w{i}", url=f"http://w{i}", ready=True, capacity=capacity)
               for i in range(ready)]
    return SystemSnapshot(role="gateway", ready=True, queue_depth=queue, inflight=inflight,
                          capacity=capacity * ready, ttfa_p50_ms=p95_ms, ttfa_p95_ms=p95_ms,
                          window_s=30.0, workers=workers)


class FakeGateway:
    def __init__(self, snapshot: SystemSnapshot | None = None, keys: list[str] | None = None):
        self.snapshot = snapshot or gateway_snapshot()
        self.keys = keys
        self.status = 200
        self.body_override: bytes | None = None
        self.hits = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                fake.hits += 1
                if self.path != SYSTEM_PATH:
                    self.send_error(404)
                    return
                presented = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                if fake.keys is not None and presented not in fake.keys:
                    body = b'{"error": {"code": "unauthorized"}}'
                    self.send_response(401)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                body = fake.body_override or fake.snapshot.model_dump_json().encode()
                self.send_response(fake.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> "FakeGateway":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
