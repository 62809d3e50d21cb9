"""Connections and event loops: reuse, release, `close()`, early exits, a second loop."""

from __future__ import annotations

import asyncio
import gc

import psutil
import pytest

from orpheus_tts.sdk import OrpheusTTS
from tests.support.fake_server import Behaviour


def client_sockets_to(port: int) -> list:
    """This process's TCP sockets connected to `port` (the server's own sockets excluded)."""
    return [
        c for c in psutil.Process().net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    ]


async def test_connection_is_kept_alive_across_calls(fake_server):
    srv = fake_server()
    async with OrpheusTTS([srv.url]) as tts:
        for _ in range(3):
            await tts.synthesize("Hi.")
        assert srv.open_connections == 1
        assert len(client_sockets_to(srv.port)) == 1


async def test_close_leaves_no_socket_open_and_is_idempotent(fake_server):
    a = fake_server()
    b = fake_server(first_delay_ms=50)
    tts = OrpheusTTS([a.url, b.url], hedge_ttfb_ms=None)
    await asyncio.gather(*(tts.synthesize("Hi.") for _ in range(4)))
    assert client_sockets_to(a.port) or client_sockets_to(b.port)
    await tts.close()
    await tts.close()
    assert tts.closed
    assert client_sockets_to(a.port) == [] and client_sockets_to(b.port) == []
    assert await a.await_until(lambda: a.open_connections == 0)
    assert await b.await_until(lambda: b.open_connections == 0)
    with pytest.raises(RuntimeError, match="closed"):
        await tts.synthesize("Hi.")


async def test_close_ends_a_stream_in_progress(fake_server):
    srv = fake_server()
    srv.script(Behaviour.stall(after=1))
    tts = OrpheusTTS([srv.url])
    stream = tts.stream("Hi.")
    assert await stream.__anext__() == srv.expected_pcm(1)
    await tts.close()
    assert await srv.await_until(lambda: srv.cancelled_streams == 1 and srv.open_connections == 0)
    with pytest.raises(Exception):  # noqa: B017 - the transport is gone; any error, no hang
        await asyncio.wait_for(stream.__anext__(), 5)


async def test_close_while_waiting_for_first_audio_aborts_the_request(fake_server):
    srv = fake_server()
    srv.script(Behaviour.stall(after=0))
    tts = OrpheusTTS([srv.url])
    pending = asyncio.ensure_future(tts.synthesize("Hi."))
    assert await srv.await_until(lambda: srv.open_streams == 1)
    await tts.close()
    with pytest.raises(RuntimeError, match="closed"):
        await asyncio.wait_for(pending, 5)
    assert await srv.await_until(lambda: srv.cancelled_streams == 1 and srv.open_connections == 0)


async def test_leaving_the_loop_early_closes_the_stream(fake_server):
    srv = fake_server()
    srv.script(Behaviour.stall(after=1), Behaviour.stall(after=1))
    async with OrpheusTTS([srv.url]) as tts:
        async with tts.stream("Hi.") as stream:
            async for _ in stream:
                break
        assert await srv.await_until(lambda: srv.cancelled_streams == 1)

        # Dropping the iterator without closing it also releases the stream.
        stream = tts.stream("Hi.")
        await stream.__anext__()
        del stream
        gc.collect()
        assert await srv.await_until(lambda: srv.cancelled_streams == 2)
        assert tts.endpoints()[0].active == 0
        # The breaker was not blamed for the caller leaving.
        assert tts.endpoints()[0].consecutive_failures == 0


def test_a_second_event_loop_is_refused(fake_server):
    srv = fake_server()
    tts = OrpheusTTS([srv.url])
    first, second = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        assert first.run_until_complete(tts.synthesize("Hi.")) == srv.expected_pcm(3)
        with pytest.raises(RuntimeError, match="event loop"):
            second.run_until_complete(tts.synthesize("Hi."))
        with pytest.raises(RuntimeError, match="event loop"):
            second.run_until_complete(tts.close())
        first.run_until_complete(tts.close())
    finally:
        first.close()
        second.close()
    assert len(srv.stream_requests) == 1
    assert srv.wait_until(lambda: srv.open_connections == 0)


def test_instance_can_be_created_outside_any_event_loop(fake_server):
    srv = fake_server()
    tts = OrpheusTTS(srv.url)  # e.g. at import time in a web app

    async def use() -> bytes:
        try:
            return await tts.synthesize("Hi.")
        finally:
            await tts.close()

    assert asyncio.run(use()) == srv.expected_pcm(3)
