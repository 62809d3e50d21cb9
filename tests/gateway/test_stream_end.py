"""The end of a v1 stream: the client is done at the terminal frame, whatever the worker does
after it, and the worker connection still carries the next stream."""

from __future__ import annotations

import asyncio
import json
import threading
import time

from aiohttp import web

from orpheus_tts import protocol as p
from tests.gateway.conftest import auth


class LingeringWorker:
    """A v1 worker that, after its terminal frame, holds the body open for `linger_s` and then
    sends a stray line before ending it (as a proxy or a buggy server might)."""

    def __init__(self, linger_s: float) -> None:
        self.linger_s = linger_s
        self.connections: set[tuple[str, int]] = set()
        self.bodies_ended: list[float] = []
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.url = ""

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_get(p.SYSTEM_PATH, self._system)
        app.router.add_post(p.STREAM_PATH, self._stream)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        self._started.set()
        self._loop.run_forever()

    def start(self) -> "LingeringWorker":
        self._thread.start()
        assert self._started.wait(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _system(self, _request: web.Request) -> web.Response:
        snap = p.SystemSnapshot(role="worker", ready=True, worker_id="lingering",
                                voices=["tara"], capacity=4)
        return web.json_response(json.loads(snap.model_dump_json(exclude_none=True)))

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        self.connections.add(request.transport.get_extra_info("peername"))
        response = web.StreamResponse(headers={"Content-Type": p.NDJSON})
        await response.prepare(request)
        await response.write(p.chunk_line(0, b"\x01\x00" * 240))
        await response.write(p.encode_frame(p.EosFrame(chunks=1, samples=240,
                                                       audio_s=p.pcm_seconds(240))))
        await asyncio.sleep(self.linger_s)
        await response.write(p.chunk_line(1, b"\x02\x00" * 240))  # after the terminal frame
        await response.write_eof()
        self.bodies_ended.append(time.monotonic())
        return response


def test_the_client_is_done_at_the_terminal_frame(gateway_server, client):
    worker = LingeringWorker(linger_s=3.0).start()
    try:
        gw = gateway_server([worker.url])
        gw.wait_polled()
        kinds = []
        with client.stream("POST", gw.url + p.STREAM_PATH, json={"text": "hello"},
                           headers=auth()) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                kinds.append(json.loads(line)["type"])
                if kinds[-1] == "eos":
                    terminal_at = time.monotonic()
        ended_at = time.monotonic()
        assert kinds == ["chunk", "eos"]
        # The end of the body came with the terminal frame, not after the worker's end of body
        # (or the gateway's half-second wait for it).
        assert ended_at - terminal_at < 0.25
        assert not worker.bodies_ended
    finally:
        worker.stop()


def test_a_worker_connection_carries_the_next_stream_after_a_late_end_of_body(
        gateway_server, client):
    worker = LingeringWorker(linger_s=0.1).start()  # within the gateway's wait for it
    try:
        gw = gateway_server([worker.url])
        gw.wait_polled()
        for n in (1, 2):
            r = client.post(gw.url + p.STREAM_PATH, json={"text": "hello"}, headers=auth())
            assert r.status_code == 200
            # nothing after the terminal frame reaches the client
            assert [json.loads(line)["type"] for line in r.text.splitlines()] == ["chunk", "eos"]
            assert gw.wait_until(lambda: len(worker.bodies_ended) == n, 5)
            time.sleep(0.2)  # the gateway reads the end of the body and pools the connection
        assert len(worker.connections) == 1
    finally:
        worker.stop()
