"""A fault-injecting TCP proxy for chaos tests: latency, jitter, dropped and reset connections.

`ChaosProxy(upstream_port)` listens on a free loopback port and forwards bytes to the upstream,
injecting the faults in its `faults` (changeable while it runs). It runs its own event loop in a
daemon thread, so sync fixtures and async tests can share one. Faults:

- `latency_s` + uniform(0, `jitter_s`): delay before each forwarded piece, in both directions
  (order is kept: each direction is one pipe).
- `drop_rate`: share of new connections accepted and then closed at once (FIN), nothing forwarded.
- `reset_rate`: share of connections reset (RST) once `reset_after_bytes` bytes (uniform in the
  range) have come back from the upstream: a connection that dies mid-response.
- `blackhole`: new connections are accepted and held open, never forwarded or answered.

Counters (`stats`) say what happened, so tests can assert the faults were really injected.
Also runnable: `python -m tests.support.chaos_proxy --upstream-port P [--port Q] [--latency-ms ..]`.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import struct
import threading
from collections import Counter
from dataclasses import dataclass, field, replace

import pytest


@dataclass(frozen=True)
class Faults:
    latency_s: float = 0.0
    jitter_s: float = 0.0
    drop_rate: float = 0.0
    reset_rate: float = 0.0
    reset_after_bytes: tuple[int, int] = (0, 4096)
    blackhole: bool = False

    def with_(self, **changes) -> "Faults":
        return replace(self, **changes)


NO_FAULTS = Faults()


def _abort_with_rst(writer: asyncio.StreamWriter) -> None:
    """Close so the peer sees a reset (SO_LINGER 0), not an orderly FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


def _close(writer: asyncio.StreamWriter) -> None:
    if not writer.transport.is_closing():
        writer.close()


@dataclass(eq=False)
class _Conn:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task] = field(default_factory=list)


class ChaosProxy:
    """One listening port in front of one upstream `host:port`."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1",
                 faults: Faults = NO_FAULTS, seed: int | None = None,
                 listen_host: str = "127.0.0.1", port: int = 0):
        self.upstream = (upstream_host, upstream_port)
        self.faults = faults
        self.stats: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._listen = (listen_host, port)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[_Conn] = set()
        self.port = 0

    # -- lifecycle (idempotent) ------------------------------------------------------------
    def start(self) -> "ChaosProxy":
        if self._thread is not None:
            return self
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._handle, *self._listen))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="chaos-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("chaos proxy did not start")
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        fut.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._thread = None

    def __enter__(self) -> "ChaosProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset_all(self) -> int:
        """Reset every open connection now (a network blip); returns how many."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(self._reset_all(), self._loop).result(10)

    @property
    def open_connections(self) -> int:
        return len(self._conns)

    # -- internals (run on the proxy's loop) -----------------------------------------------
    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._reset_all()
        if self._server is not None:
            await self._server.wait_closed()

    async def _reset_all(self) -> int:
        conns = list(self._conns)
        for conn in conns:
            self._teardown(conn, rst=True)
        for conn in conns:
            for t in conn.tasks:
                t.cancel()
            await asyncio.gather(*conn.tasks, return_exceptions=True)
        return len(conns)

    def _teardown(self, conn: _Conn, rst: bool) -> None:
        for w in (conn.client, conn.upstream):
            if w is None:
                continue
            if rst:
                _abort_with_rst(w)
            else:
                _close(w)
        self._conns.discard(conn)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        faults = self.faults
        conn = _Conn(client=writer)
        self._conns.add(conn)
        self.stats["connections"] += 1
        try:
            if faults.blackhole:
                self.stats["blackholed"] += 1
                await reader.read()  # hold until the client gives up
                return
            if self._rng.random() < faults.drop_rate:
                self.stats["dropped"] += 1
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                self.stats["upstream_refused"] += 1
                _abort_with_rst(writer)
                return
            conn.upstream = up_writer
            reset_at = None
            if self._rng.random() < faults.reset_rate:
                lo, hi = faults.reset_after_bytes
                reset_at = self._rng.randint(lo, hi)
            conn.tasks = [
                asyncio.ensure_future(self._pipe(reader, up_writer, conn, None)),
                asyncio.ensure_future(self._pipe(up_reader, writer, conn, reset_at)),
            ]
            await asyncio.gather(*conn.tasks, return_exceptions=True)
        finally:
            if conn in self._conns:
                self._teardown(conn, rst=False)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, conn: _Conn,
                    reset_at: int | None) -> None:
        sent = 0
        try:
            while True:
                data = await src.read(65536)
                if not data:
                    break
                faults = self.faults
                delay = faults.latency_s + (self._rng.uniform(0, faults.jitter_s)
                                            if faults.jitter_s else 0.0)
                if delay > 0:
                    await asyncio.sleep(delay)
                if reset_at is not None and sent + len(data) >= reset_at:
                    dst.write(data[: max(0, reset_at - sent)])
                    self.stats["reset"] += 1
                    self._teardown(conn, rst=True)
                    return
                dst.write(data)
                sent += len(data)
                self.stats["bytes"] += len(data)
                await dst.drain()
            if not dst.transport.is_closing() and dst.can_write_eof():
                dst.write_eof()  # pass the half-close on; the other direction goes on
        except (ConnectionError, OSError):
            # One side was reset: reset the other too, so no half-open pair outlives it.
            if conn in self._conns:
                self._teardown(conn, rst=True)


@pytest.fixture
def chaos_proxy_factory():
    """Make proxies in front of upstream ports; all are stopped when the test ends."""
    made: list[ChaosProxy] = []

    def make(upstream_port: int, faults: Faults = NO_FAULTS, seed: int | None = 0) -> ChaosProxy:
        proxy = ChaosProxy(upstream_port, faults=faults, seed=seed).start()
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--upstream-port", type=int, required=True)
    ap.add_argument("--upstream-host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency-ms", type=float, default=0.0)
    ap.add_argument("--jitter-ms", type=float, default=0.0)
    ap.add_argument("--drop-rate", type=float, default=0.0)
    ap.add_argument("--reset-rate", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args(argv)
    faults = Faults(latency_s=args.latency_ms / 1000, jitter_s=args.jitter_ms / 1000,
                    drop_rate=args.drop_rate, reset_rate=args.reset_rate)
    proxy = ChaosProxy(args.upstream_port, args.upstream_host, faults, args.seed,
                       port=args.port).start()
    print(f"chaos proxy on 127.0.0.1:{proxy.port} -> {args.upstream_host}:{args.upstream_port}",
          flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        proxy.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
