"""A real gateway (uvicorn on a free loopback port, own thread and event loop) for the tests."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from orpheus_gateway.app import create_app
from orpheus_gateway.logs import install_log_redaction
from orpheus_gateway.config import GatewayConfig
from orpheus_gateway.server import server_settings
from orpheus_gateway.core import Gateway

API_KEY = "test-key-0123456789"
OTHER_KEY = "second-key-abcdef"


class GatewayServer:
    """`create_app(config)` served by uvicorn from a daemon thread; `url`, `gateway`, `stop()`."""

    def __init__(self, config: GatewayConfig, gateway: Gateway | None = None):
        self.config = config
        self.app = create_app(config, gateway)
        self.gateway: Gateway = self.app.state.gateway
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> GatewayServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(
            self.app, log_level="warning", access_log=False, timeout_graceful_shutdown=1,
            ws_ping_interval=self.config.ws_ping_interval_s,
            ws_ping_timeout=self.config.ws_ping_interval_s, **server_settings()))
        self._server = server

        def run() -> None:
            async def main() -> None:
                self.loop = asyncio.get_running_loop()
                await server.serve(sockets=[sock])
            try:
                asyncio.run(main())
            finally:
                sock.close()

        self._thread = threading.Thread(target=run, name=f"gateway-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 15
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("gateway did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout=15)
        self._server = self._thread = None

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the gateway's event loop (to read state consistently)."""
        assert self.loop is not None
        async def wrap() -> Any:
            return fn()
        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result(5)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while not self.call(predicate):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def wait_polled(self, timeout: float = 5.0) -> None:
        """Until every worker has answered a /v1/system poll (voices known)."""
        assert self.wait_until(lambda: all(w.voices for w in self.gateway.pool)
                               and len(self.gateway.pool) > 0, timeout)


def gateway_config(workers: list[str], **overrides: Any) -> GatewayConfig:
    base = dict(workers=workers, api_keys=[API_KEY, OTHER_KEY], poll_interval_s=0.2,
                breaker_reset_s=1.0, ws_idle_timeout_s=30.0)
    base.update(overrides)
    return GatewayConfig(**base)


@pytest.fixture
def gateway_server() -> Iterator[Callable[..., GatewayServer]]:
    """Factory: `gw = gateway_server([srv.url, ...], rate_limit_rpm=5)`; stopped at teardown."""
    install_log_redaction()
    servers: list[GatewayServer] = []

    def make(workers: list[str], **overrides: Any) -> GatewayServer:
        gw = GatewayServer(gateway_config(workers, **overrides)).start()
        servers.append(gw)
        return gw

    yield make
    for gw in servers:
        gw.stop()


def auth(key: str = API_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=20) as c:
        yield c
