"""A small but real v1 server on loopback, scriptable to misbehave.

Used by the SDK tests, by the gateway tests (as fake workers) and by benchmarks (as separate
processes). It speaks real HTTP/1.1 (uvicorn, keep-alive, chunked transfer) and builds every
frame, error body and header with `orpheus_tts.protocol`, so what it sends is exactly the v1
contract — except where a `Behaviour` says to break it.

Routes
------
- `POST /v1/tts/stream`: validates the body with `protocol.parse_request` (bad input → 400 with
  OpenAI's error body; unknown voice → 400 `unknown_voice`), then plays one `Behaviour`.
  Every answer echoes `X-Request-ID` (the body's `request_id`, the request header, or a new
  id) and carries the load hints `X-Orpheus-Queue-Depth` / `X-Orpheus-Inflight` and
  `X-Orpheus-Worker`.
- `GET /v1/system`: a `SystemSnapshot` with `role="worker"`.
- `GET /healthz`: always 200. `GET /readyz`: 200, or 503 while `srv.ready = False`
  (a not-ready server also answers streams with 503 `draining` + `Retry-After`).
- `GET /v1/voices`: `{"voices": [...], "aliases": {...}}`.
- `GET /metrics`: Prometheus text with the counters below.

Behaviours (`Behaviour`, frozen dataclass; build them with the class methods)
---------------------------------------------------------------------------------
- `Behaviour.normal(chunks=3, chunk_samples=480, chunk_delay_s=0, first_delay_s=0)`:
  `chunks` chunk frames, a `metrics` frame after the first chunk, then `eos`.
- `Behaviour.stall(after=k)`: k chunks, then nothing, forever (until the client goes away or
  the server stops). Ignores the request's `timeout_s` on purpose: a broken server.
- `Behaviour.drop(after=k)`: k chunks, then the TCP connection is closed mid-body (the
  chunked encoding is never terminated: clients see a protocol error).
- `Behaviour.eof(after=k)`: k chunks, then a clean end of body with no terminal frame.
- `Behaviour.error(code, after=k, retryable=None, message=...)`: k chunks, then an `error`
  frame (retryable defaults to what `protocol.ErrorCode` declares for the code).
- `Behaviour.http_error(status=503, code="overloaded", message=..., retry_after_s=1)`:
  an HTTP error before streaming with OpenAI's error body (and `Retry-After` if given).
  The status is played as given, so a test can also script a proxy's odd answer.
- Every behaviour also takes `first_delay_s` (delay before the first chunk / before the
  response head for `http_error`), `chunk_delay_s`, `chunk_samples`, and `queue_depth` /
  `inflight` to override the load hints of that one response. Fields not given take the
  dataclass defaults (3 chunks of 480 samples, no delays), not the server's constructor
  settings; the constructor's `chunks`/`chunk_samples`/`*_delay_ms` only build `srv.default`.

The server plays, in this order of precedence: a directive in the request's text,
`[[fake kind=stall chunks=1 first_delay_s=0.5]]` (any `Behaviour` field as key=value; it
travels through a gateway to its workers untouched); else the next behaviour from its queue
(`srv.script(b1, b2, ...)`, one per stream request); else `srv.default`. Normal streams enforce
the request's `timeout_s` (an `error` frame `deadline_exceeded`), as real servers do.

Audio: chunk `seq` is `chunk_samples` int16 samples all equal to `srv.tone + seq`, so tests
can tell servers and chunks apart (`srv.expected_pcm(n)` gives the PCM of n chunks).

Observability (thread-safe, read from any thread)
-------------------------------------------------
- `srv.requests`: every request received, as `ReceivedRequest(method, path, headers, body)`
  (headers lower-cased; body is the decoded JSON or None); `srv.stream_requests` only streams.
- `srv.open_streams`: stream responses in progress now.
- `srv.cancelled_streams`: streams the client disconnected from before they ended.
- `srv.completed_streams`: streams that played their behaviour to its end.
- `srv.open_connections`: TCP connections open on the server now.
- `srv.wait_until(lambda: srv.cancelled_streams == 1, timeout=5)`: poll a condition
  (`await srv.await_until(...)` in async tests); `srv.stats()`: the counters as a dict.
- `srv.queue_depth` / `srv.inflight`: load hints to advertise (inflight None = real count).

Control from another process
----------------------------
- `POST /_fake/control` with any of `{"script": [{"kind": "drop", "chunks": 1}, ...],
  "clear": true, "default": {...}, "ready": false, "queue_depth": 3, "inflight": 2}`
  (behaviours as `Behaviour` field dicts; `chunks` is the count sent before a failure);
  answers the stats below. Bad keys → 400.
- `GET /_fake/stats`: `{"stream_requests", "open_streams", "cancelled_streams",
  "completed_streams", "open_connections"}`.

Lifecycle
---------
`FakeServer(...).start()` binds a free loopback port (or `port=`) and serves from a daemon
thread with its own event loop, so it works from sync and async tests alike; `srv.url`.
`srv.stop()` closes the listener (new connections are refused) and all connections;
`srv.start()` again re-binds the same port; `srv.request_stop()` begins stopping without
waiting (to stop many at once). Use it as a context manager, or the pytest
fixture `fake_server` (a factory: `srv = fake_server(chunks=5)`; all stopped at teardown).

Standalone: `python -m tests.support.fake_server --port P [--chunks N --chunk-samples S
--chunk-delay-ms D --first-delay-ms F --queue-depth Q --worker-id ID]` prints
`READY http://127.0.0.1:P` once listening and serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import re
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn

from orpheus_tts import protocol as p

DEFAULT_VOICES = ("tara", "leah", "jess", "leo", "dan", "mia", "zac", "zoe")
DEFAULT_ALIASES = {
    "alloy": "tara", "echo": "leo", "fable": "dan", "onyx": "zac", "nova": "leah",
    "shimmer": "jess",
}
KINDS = ("normal", "stall", "drop", "eof", "error", "http_error")


class _QuietScriptedDrops(logging.Filter):
    """uvicorn logs an error when a response is left unterminated; here that is the script."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.threadName.startswith(_THREAD_PREFIX)
            and "returned without completing response" in record.getMessage()
        )


_THREAD_PREFIX = "fake-v1-"
logging.getLogger("uvicorn.error").addFilter(_QuietScriptedDrops())


@dataclass(frozen=True)
class Behaviour:
    """What the server does with one stream request."""

    kind: str = "normal"
    chunks: int = 3  # chunk frames sent (for stall/drop/eof/error: before the failure)
    chunk_samples: int = 480
    chunk_delay_s: float = 0.0
    first_delay_s: float = 0.0
    status: int = 503
    code: str = p.ErrorCode.OVERLOADED
    message: str = "scripted failure"
    retryable: bool | None = None
    retry_after_s: float | None = 1.0
    queue_depth: int | None = None
    inflight: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown behaviour kind {self.kind!r}; one of {KINDS}")

    @classmethod
    def normal(cls, chunks: int = 3, **kw: Any) -> Behaviour:
        return cls("normal", chunks=chunks, **kw)

    @classmethod
    def stall(cls, after: int = 0, **kw: Any) -> Behaviour:
        return cls("stall", chunks=after, **kw)

    @classmethod
    def drop(cls, after: int = 0, **kw: Any) -> Behaviour:
        return cls("drop", chunks=after, **kw)

    @classmethod
    def eof(cls, after: int = 0, **kw: Any) -> Behaviour:
        return cls("eof", chunks=after, **kw)

    @classmethod
    def error(cls, code: str = p.ErrorCode.ENGINE_ERROR, after: int = 0, **kw: Any) -> Behaviour:
        return cls("error", chunks=after, code=code, **kw)

    @classmethod
    def http_error(
        cls, status: int = 503, code: str = p.ErrorCode.OVERLOADED, **kw: Any
    ) -> Behaviour:
        return cls("http_error", status=status, code=code, **kw)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Behaviour:
        """From JSON (control endpoint); unknown keys raise ValueError."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown behaviour fields {sorted(unknown)}; known: {sorted(names)}")
        return cls(**data)

    @classmethod
    def from_directive(cls, text: str) -> Behaviour | None:
        """`[[fake kind=stall chunks=1 first_delay_s=0.5]]` anywhere in the text, or None."""
        match = _DIRECTIVE.search(text)
        if match is None:
            return None
        data: dict[str, Any] = {}
        for item in match.group(1).split():
            key, _, raw = item.partition("=")
            data[key] = _scalar(raw)
        return cls.from_dict(data)


_DIRECTIVE = re.compile(r"\[\[fake((?:\s+[a-z_]+=\S+?)*)\s*\]\]")


def _scalar(raw: str) -> Any:
    if raw in ("true", "false"):
        return raw == "true"
    if raw in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any = None
    received_at: float = field(default_factory=time.monotonic)


class FakeServer:
    """A scriptable v1 server on loopback; see the module docstring."""

    def __init__(
        self,
        chunks: int = 3,
        chunk_samples: int = 480,
        chunk_delay_ms: float = 0.0,
        first_delay_ms: float = 0.0,
        *,
        default: Behaviour | None = None,
        queue_depth: int = 0,
        inflight: int | None = None,
        ready: bool = True,
        worker_id: str | None = None,
        tone: int = 100,
        voices: tuple[str, ...] = DEFAULT_VOICES,
        aliases: dict[str, str] | None = None,
        max_text_chars: int = p.DEFAULT_MAX_TEXT_CHARS,
        max_timeout_s: float = p.DEFAULT_MAX_TIMEOUT_S,
        capacity: int = 4,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        self.default = default or Behaviour.normal(
            chunks,
            chunk_samples=chunk_samples,
            chunk_delay_s=chunk_delay_ms / 1000,
            first_delay_s=first_delay_ms / 1000,
        )
        self.queue_depth = queue_depth
        self.inflight = inflight
        self.ready = ready
        self.worker_id = worker_id or f"fake-{uuid.uuid4().hex[:6]}"
        self.tone = tone
        self.voices = tuple(voices)
        self.aliases = dict(DEFAULT_ALIASES if aliases is None else aliases)
        self.max_text_chars = max_text_chars
        self.max_timeout_s = max_timeout_s
        self.capacity = capacity
        self.host = host
        self.port = port

        self._lock = threading.Lock()
        self._queue: deque[Behaviour] = deque()
        self._requests: list[ReceivedRequest] = []
        self._open_streams = 0
        self._cancelled = 0
        self._completed = 0
        self._ttfa_ms: deque[float] = deque(maxlen=256)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    # --- scripting ---------------------------------------------------------------------------
    def script(self, *behaviours: Behaviour) -> None:
        """Queue behaviours, consumed one per stream request before falling back to default."""
        with self._lock:
            self._queue.extend(behaviours)

    def clear_script(self) -> None:
        with self._lock:
            self._queue.clear()

    def _next_behaviour(self) -> Behaviour:
        with self._lock:
            return self._queue.popleft() if self._queue else self.default

    # --- observability -----------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def stream_requests(self) -> list[ReceivedRequest]:
        return [r for r in self.requests if r.path == p.STREAM_PATH]

    @property
    def open_streams(self) -> int:
        with self._lock:
            return self._open_streams

    @property
    def cancelled_streams(self) -> int:
        with self._lock:
            return self._cancelled

    @property
    def completed_streams(self) -> int:
        with self._lock:
            return self._completed

    @property
    def open_connections(self) -> int:
        server = self._server
        return len(server.server_state.connections) if server is not None else 0

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Poll `predicate` until true or `timeout` seconds pass; returns the last result."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() >= deadline:
                return bool(predicate())
            time.sleep(0.01)
        return True

    async def await_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """`wait_until` for async tests (does not block the caller's event loop)."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() >= deadline:
                return bool(predicate())
            await asyncio.sleep(0.01)
        return True

    def expected_pcm(self, chunks: int, chunk_samples: int | None = None) -> bytes:
        n = self.default.chunk_samples if chunk_samples is None else chunk_samples
        return b"".join(self._pcm(seq, n) for seq in range(chunks))

    def _pcm(self, seq: int, samples: int) -> bytes:
        value = (self.tone + seq) % 32768
        return value.to_bytes(2, "little", signed=True) * samples

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> FakeServer:
        if self._thread is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            interface="asgi3",
            timeout_graceful_shutdown=1,
            timeout_keep_alive=30,
        )
        server = uvicorn.Server(config)
        self._server = server
        thread = threading.Thread(
            target=self._run, args=(server, sock), name=f"{_THREAD_PREFIX}{self.port}", daemon=True
        )
        self._thread = thread
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"fake v1 server on port {self.port} did not start")
            time.sleep(0.005)
        return self

    def _run(self, server: uvicorn.Server, sock: socket.socket) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stopping = asyncio.Event()
            await server.serve(sockets=[sock])

        try:
            asyncio.run(main())
        finally:
            sock.close()

    def stop(self) -> None:
        """Stop serving: the port refuses connections afterwards. Idempotent."""
        self.request_stop()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=10)
        self._server = self._thread = self._loop = self._stopping = None

    def request_stop(self) -> None:
        """Begin stopping without waiting (`stop()` waits); lets many servers stop at once."""
        server, loop, stopping = self._server, self._loop, self._stopping
        if server is None:
            return
        server.should_exit = True
        if loop is not None and stopping is not None:
            try:
                loop.call_soon_threadsafe(stopping.set)
            except RuntimeError:  # loop already closed
                pass

    def restart(self) -> FakeServer:
        self.stop()
        return self.start()

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- ASGI app ----------------------------------------------------------------------------
    async def _app(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        raw = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        with self._lock:
            self._requests.append(ReceivedRequest(method, path, headers, body))

        if path == p.STREAM_PATH and method == "POST":
            await self._stream(raw, headers, receive, send)
        elif path == p.SYSTEM_PATH and method == "GET":
            await _json(send, 200, self.snapshot().model_dump(mode="json"))
        elif path == "/healthz":
            await _json(send, 200, {"status": "ok"})
        elif path == "/readyz":
            await _json(send, 200 if self.ready else 503, {"ready": self.ready})
        elif path == p.VOICES_PATH and method == "GET":
            await _json(send, 200, {"voices": list(self.voices), "aliases": self.aliases})
        elif path == "/_fake/control" and method == "POST":
            await self._control(body, send)
        elif path == "/_fake/stats" and method == "GET":
            await _json(send, 200, self.stats())
        elif path == "/metrics":
            await _send(send, 200, self._metrics_text().encode(), "text/plain; version=0.0.4")
        else:
            await _json(send, 404,
                        p.error_body(p.ErrorCode.NOT_FOUND, f"No route for {method} {path}."))

    def stats(self) -> dict[str, Any]:
        return {
            "stream_requests": len(self.stream_requests),
            "open_streams": self.open_streams,
            "cancelled_streams": self.cancelled_streams,
            "completed_streams": self.completed_streams,
            "open_connections": self.open_connections,
        }

    async def _control(self, body: Any, send: Callable) -> None:
        """`POST /_fake/control`: script a server in another process (see module docstring)."""
        try:
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            unknown = set(body) - {"script", "default", "clear", "ready", "queue_depth",
                                   "inflight"}
            if unknown:
                raise ValueError(f"unknown control keys {sorted(unknown)}")
            script = [Behaviour.from_dict(b) for b in body.get("script", [])]
            default = Behaviour.from_dict(body["default"]) if body.get("default") else None
        except (TypeError, ValueError) as exc:
            await _json(send, 400, p.error_body(p.ErrorCode.INVALID_REQUEST, str(exc)))
            return
        if body.get("clear"):
            self.clear_script()
        self.script(*script)
        if default is not None:
            self.default = default
        for key in ("ready", "queue_depth", "inflight"):
            if key in body:
                setattr(self, key, body[key])
        await _json(send, 200, self.stats())

    def snapshot(self) -> p.SystemSnapshot:
        with self._lock:
            ttfa = sorted(self._ttfa_ms)
        pct = (lambda q: ttfa[min(len(ttfa) - 1, int(q * len(ttfa)))]) if ttfa else None
        return p.SystemSnapshot(
            role="worker",
            ready=self.ready,
            queue_depth=self.queue_depth,
            inflight=self._inflight_hint(None),
            capacity=self.capacity,
            ttfa_p50_ms=pct(0.5) if pct else None,
            ttfa_p95_ms=pct(0.95) if pct else None,
            window_s=60.0,
            model="fake",
            voices=list(self.voices),
            worker_id=self.worker_id,
        )

    def _metrics_text(self) -> str:
        with self._lock:
            values = {
                "fake_stream_requests_total": sum(
                    1 for r in self._requests if r.path == p.STREAM_PATH
                ),
                "fake_open_streams": self._open_streams,
                "fake_cancelled_streams_total": self._cancelled,
                "fake_completed_streams_total": self._completed,
            }
        return "".join(f"{k} {v}\n" for k, v in values.items())

    def _inflight_hint(self, behaviour: Behaviour | None) -> int:
        if behaviour is not None and behaviour.inflight is not None:
            return behaviour.inflight
        if self.inflight is not None:
            return self.inflight
        return self.open_streams

    async def _stream(
        self, raw: bytes, headers: dict[str, str], receive: Callable, send: Callable
    ) -> None:
        request_id = headers.get(p.HEADER_REQUEST_ID.lower()) or uuid.uuid4().hex
        try:
            req = p.parse_request_bytes(
                raw, max_text_chars=self.max_text_chars, max_timeout_s=self.max_timeout_s
            )
            if req.request_id:
                request_id = req.request_id
            known = req.voice is None or req.voice in self.voices or req.voice in self.aliases
            if not known:
                raise p.RequestError(
                    p.ErrorCode.UNKNOWN_VOICE,
                    f"Unknown voice '{req.voice}'; valid voices: {', '.join(self.voices)}.",
                    param="voice",
                )
            if not self.ready:
                raise p.RequestError(p.ErrorCode.DRAINING, "Server is draining.", retry_after_s=1)
        except p.RequestError as exc:
            await _json(send, exc.status, exc.body(), {p.HEADER_REQUEST_ID: request_id,
                                                        **exc.headers()})
            return

        try:
            directive = Behaviour.from_directive(req.text)
        except (TypeError, ValueError) as exc:
            await _json(send, 400,
                        p.error_body(p.ErrorCode.INVALID_REQUEST, f"bad fake directive: {exc}"),
                        {p.HEADER_REQUEST_ID: request_id})
            return
        behaviour = directive or self._next_behaviour()
        if behaviour.kind == "http_error":
            if behaviour.first_delay_s:
                await asyncio.sleep(behaviour.first_delay_s)
            extra = {p.HEADER_REQUEST_ID: request_id}
            if behaviour.retry_after_s is not None:
                extra[p.HEADER_RETRY_AFTER] = str(max(1, round(behaviour.retry_after_s)))
            kind = p.ErrorCode.of(behaviour.code, behaviour.status)
            body = {"error": {"message": behaviour.message, "type": kind.openai_type,
                              "code": behaviour.code, "param": None}}
            await _json(send, behaviour.status, body, extra)
            return

        with self._lock:
            self._open_streams += 1
        finished = False
        try:
            queue_depth = (
                behaviour.queue_depth if behaviour.queue_depth is not None else self.queue_depth
            )
            inflight = self._inflight_hint(behaviour)
            head = {
                "content-type": p.NDJSON,
                p.HEADER_REQUEST_ID: request_id,
                p.HEADER_WORKER_ID: self.worker_id,
                **p.load_headers(queue_depth, inflight),
            }
            await send({
                "type": "http.response.start",
                "status": 200,
                "headers": [(k.lower().encode(), v.encode()) for k, v in head.items()],
            })
            play = asyncio.ensure_future(
                self._play(behaviour, req, send, queue_depth, inflight)
            )
            watch = asyncio.ensure_future(_wait_disconnect(receive))
            stopping = asyncio.ensure_future(self._stopping.wait())  # type: ignore[union-attr]
            try:
                done, _ = await asyncio.wait(
                    {play, watch, stopping}, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for task in (play, watch, stopping):
                    task.cancel()
                await asyncio.gather(play, watch, stopping, return_exceptions=True)
            if play in done and play.exception() is None:
                finished = True
                if play.result() == "drop":
                    return  # returning without completing the response closes the connection
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            elif play in done:
                raise play.exception()  # type: ignore[misc]
            # else: the client went away or the server is stopping; just return
        finally:
            with self._lock:
                self._open_streams -= 1
                if finished:
                    self._completed += 1
                else:
                    self._cancelled += 1

    async def _play(
        self,
        b: Behaviour,
        req: p.TTSRequest,
        send: Callable,
        queue_depth: int,
        inflight: int,
    ) -> str:
        started = time.monotonic()
        deadline = None
        if b.kind == "normal":
            deadline = started + (req.timeout_s or p.DEFAULT_TIMEOUT_S)

        async def write(line: bytes) -> None:
            await send({"type": "http.response.body", "body": line, "more_body": True})

        async def sleep(delay: float) -> bool:
            """Sleep; False if the request's deadline passes first."""
            if deadline is not None and time.monotonic() + delay > deadline:
                await asyncio.sleep(max(0.0, deadline - time.monotonic()))
                return False
            if delay > 0:
                await asyncio.sleep(delay)
            return True

        async def deadline_error() -> str:
            frame = p.error_frame(p.ErrorCode.DEADLINE_EXCEEDED, "Request deadline exceeded.")
            await write(p.encode_frame(frame))
            return "error"

        ttfa_ms = None
        for seq in range(b.chunks):
            delay = b.first_delay_s if seq == 0 else b.chunk_delay_s
            if not await sleep(delay):
                return await deadline_error()
            await write(p.chunk_line(seq, self._pcm(seq, b.chunk_samples)))
            if seq == 0:
                ttfa_ms = (time.monotonic() - started) * 1000
                with self._lock:
                    self._ttfa_ms.append(ttfa_ms)
                metrics = p.MetricsFrame(
                    worker_id=self.worker_id, queue_wait_ms=0.0, ttfa_ms=ttfa_ms,
                    queue_depth=queue_depth, inflight=inflight,
                )
                await write(p.encode_frame(metrics))
        if b.chunks == 0 and b.first_delay_s and b.kind != "normal":
            await asyncio.sleep(b.first_delay_s)

        if b.kind == "stall":
            await asyncio.Event().wait()  # forever; cancelled on disconnect or stop
        if b.kind == "drop":
            return "drop"
        if b.kind == "eof":
            return "eof"
        if b.kind == "error":
            await write(p.encode_frame(p.error_frame(b.code, b.message, b.retryable)))
            return "error"
        if ttfa_ms is None:  # zero chunks: still one metrics frame before the terminal one
            await write(p.encode_frame(p.MetricsFrame(
                worker_id=self.worker_id, queue_wait_ms=0.0,
                queue_depth=queue_depth, inflight=inflight,
            )))
        samples = b.chunks * b.chunk_samples
        total_ms = (time.monotonic() - started) * 1000
        audio_s = p.pcm_seconds(samples)
        eos = p.EosFrame(
            chunks=b.chunks, samples=samples, audio_s=audio_s, ttfa_ms=ttfa_ms,
            total_ms=total_ms, rtf=(total_ms / 1000 / audio_s) if audio_s else None,
        )
        await write(p.encode_frame(eos))
        return "eos"


async def _wait_disconnect(receive: Callable) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _send(
    send: Callable, status: int, body: bytes, content_type: str,
    headers: dict[str, str] | None = None,
) -> None:
    head = {"content-type": content_type, "content-length": str(len(body)), **(headers or {})}
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(k.lower().encode(), v.encode()) for k, v in head.items()],
    })
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _json(send: Callable, status: int, obj: Any, headers: dict[str, str] | None = None
                ) -> None:
    await _send(send, status, json.dumps(obj).encode(), "application/json", headers)


# --- pytest plugin -----------------------------------------------------------------------------
@pytest.fixture
def fake_server() -> Iterator[Callable[..., FakeServer]]:
    """Factory: `srv = fake_server(chunks=5, chunk_delay_ms=10)`; every server is stopped at
    teardown. Takes the `FakeServer` constructor's arguments."""
    servers: list[FakeServer] = []

    def make(*args: Any, **kwargs: Any) -> FakeServer:
        srv = FakeServer(*args, **kwargs)
        servers.append(srv)
        return srv.start()

    yield make
    for srv in servers:
        srv.request_stop()
    for srv in servers:
        srv.stop()


# --- standalone --------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.fake_server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--chunks", type=int, default=3)
    parser.add_argument("--chunk-samples", type=int, default=480)
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0)
    parser.add_argument("--first-delay-ms", type=float, default=0.0)
    parser.add_argument("--queue-depth", type=int, default=0)
    parser.add_argument("--worker-id", default=None)
    args = parser.parse_args(argv)
    srv = FakeServer(
        args.chunks, args.chunk_samples, args.chunk_delay_ms, args.first_delay_ms,
        queue_depth=args.queue_depth, worker_id=args.worker_id, host=args.host, port=args.port,
    )
    srv.start()
    print(f"READY {srv.url}", flush=True)
    stop = threading.Event()
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
