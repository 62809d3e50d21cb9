"""The chaos proxy injects exactly the faults it is told to, and forwards faithfully otherwise."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from tests.support.chaos_proxy import ChaosProxy, Faults


class EchoServer:
    """Loopback TCP server: echoes what it reads; on b"big\\n" answers 64 KiB of b"x"."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(b"x" * 65536 if data == b"big\n" else data)
            except OSError:
                pass

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def echo():
    server = EchoServer()
    yield server
    server.close()


def _connect(proxy: ChaosProxy) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    return s


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        part = s.recv(n - len(buf))
        if not part:
            break
        buf += part
    return buf


def test_forwards_both_ways_unchanged(echo):
    with ChaosProxy(echo.port) as proxy, _connect(proxy) as s:
        s.sendall(b"hello")
        assert _recv_exact(s, 5) == b"hello"
        s.sendall(b"big\n")
        assert _recv_exact(s, 65536) == b"x" * 65536
    assert proxy.stats["connections"] == 1
    assert proxy.open_connections == 0


def test_latency_delays_each_direction(echo):
    with ChaosProxy(echo.port, faults=Faults(latency_s=0.15)) as proxy, _connect(proxy) as s:
        t0 = time.monotonic()
        s.sendall(b"ping")
        assert _recv_exact(s, 4) == b"ping"
        assert time.monotonic() - t0 >= 0.3  # 0.15 s on the way in and again on the way out


def test_dropped_connection_closes_without_forwarding(echo):
    with ChaosProxy(echo.port, faults=Faults(drop_rate=1.0)) as proxy, _connect(proxy) as s:
        assert s.recv(10) == b""  # orderly close (FIN) before anything was forwarded
    assert proxy.stats["dropped"] == 1


def test_reset_cuts_the_response_after_the_given_bytes(echo):
    faults = Faults(reset_rate=1.0, reset_after_bytes=(1000, 1000))
    with ChaosProxy(echo.port, faults=faults) as proxy, _connect(proxy) as s:
        s.sendall(b"big\n")
        got = b""
        with pytest.raises(ConnectionResetError):
            while part := s.recv(65536):
                got += part
        assert got == b"x" * 1000
    assert proxy.stats["reset"] == 1


def test_blackhole_holds_the_connection_silent(echo):
    with ChaosProxy(echo.port, faults=Faults(blackhole=True)) as proxy, _connect(proxy) as s:
        s.sendall(b"hello")
        s.settimeout(0.3)
        with pytest.raises(TimeoutError):
            s.recv(10)
        deadline = time.monotonic() + 5  # the proxy's thread counts it once it has accepted
        while proxy.stats["blackholed"] != 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proxy.stats["blackholed"] == 1


def test_faults_change_while_running_and_reset_all_breaks_open_connections(echo):
    with ChaosProxy(echo.port) as proxy:
        with _connect(proxy) as s:
            s.sendall(b"a")
            assert _recv_exact(s, 1) == b"a"
            assert proxy.reset_all() == 1
            with pytest.raises(ConnectionResetError):
                s.recv(10)
        proxy.faults = Faults(drop_rate=1.0)
        with _connect(proxy) as s2:
            assert s2.recv(10) == b""
        proxy.faults = Faults()
        with _connect(proxy) as s3:
            s3.sendall(b"b")
            assert _recv_exact(s3, 1) == b"b"


def test_refused_upstream_resets_the_client():
    free = socket.create_server(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    with ChaosProxy(port) as proxy:
        # The reset can beat the client's own connect() on loopback, so it may surface there.
        with pytest.raises(ConnectionResetError):
            with _connect(proxy) as s:
                s.sendall(b"x")
                s.recv(10)
    assert proxy.stats["upstream_refused"] == 1


def test_stop_is_idempotent_and_leaves_no_thread(echo):
    before = {t.name for t in threading.enumerate()}
    proxy = ChaosProxy(echo.port).start()
    proxy.stop()
    proxy.stop()
    assert "chaos-proxy" not in {t.name for t in threading.enumerate()} - before
