"""Several endpoints: hedging, fail-over, the circuit breaker and scoring, on real servers."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from orpheus_tts import protocol as p
from orpheus_tts.errors import CircuitOpenError, HTTPStatusError, IncompleteStreamError, StreamError
from orpheus_tts.sdk import OrpheusTTS
from tests.support.fake_server import Behaviour, FakeServer


def dead_url() -> str:
    """A loopback URL whose port refuses connections."""
    srv = FakeServer().start()
    srv.stop()
    return srv.url


async def test_hedge_winner_is_the_fast_endpoint_and_loser_connection_is_closed(fake_server):
    slow = fake_server(chunks=3, first_delay_ms=3000, tone=1000)
    fast = fake_server(chunks=3, tone=2000)
    async with OrpheusTTS([slow.url, fast.url], hedge_ttfb_ms=100) as tts:
        stream = tts.stream("Hello.")
        pcm = b"".join([c async for c in stream])
        assert pcm == fast.expected_pcm(3)  # every byte from the winner, none from the loser
        assert stream.info.endpoint == fast.url
        assert stream.info.attempts == [slow.url, fast.url] and stream.info.hedged
        # The loser was cancelled, and its connection closed rather than left half-read.
        assert await slow.await_until(lambda: slow.cancelled_streams == 1)
        assert await slow.await_until(lambda: slow.open_connections == 0)
        assert slow.completed_streams == 0 and slow.open_streams == 0
        # The winner's connection stays open for reuse.
        assert fast.open_connections == 1
        # The slow endpoint now scores worse, so the next request goes to the fast one first.
        scores = {e.url: e.score_ms for e in tts.endpoints()}
        assert scores[fast.url] < scores[slow.url]
        await tts.synthesize("Again.")
    assert len(fast.stream_requests) == 2 and len(slow.stream_requests) == 1


async def test_no_backup_when_audio_arrives_before_the_hedge_delay(fake_server):
    a = fake_server(chunks=3, chunk_delay_ms=1200)  # first chunk at once, the rest slowly
    b = fake_server()
    async with OrpheusTTS([a.url, b.url], hedge_ttfb_ms=2000) as tts:
        stream = tts.stream("Hi.")
        await collect_all(stream)
    assert not stream.info.hedged
    assert len(b.stream_requests) == 0


async def test_first_endpoint_to_yield_audio_wins_even_if_it_started_first(fake_server):
    primary = fake_server(first_delay_ms=300, tone=1000)
    backup = fake_server(first_delay_ms=3000, tone=2000)
    async with OrpheusTTS([primary.url, backup.url], hedge_ttfb_ms=50) as tts:
        stream = tts.stream("Hi.")
        pcm = await collect_all(stream)
    assert pcm == primary.expected_pcm(3)
    assert stream.info.hedged and stream.info.endpoint == primary.url
    assert await backup.await_until(lambda: backup.cancelled_streams == 1)


@pytest.mark.parametrize("hedge", [None, 0])
async def test_hedging_disabled_never_starts_a_backup(fake_server, hedge):
    slow = fake_server(first_delay_ms=400)
    other = fake_server()
    async with OrpheusTTS([slow.url, other.url], hedge_ttfb_ms=hedge) as tts:
        stream = tts.stream("Hi.")
        pcm = await collect_all(stream)
    assert pcm == slow.expected_pcm(3)
    assert not stream.info.hedged and len(other.stream_requests) == 0


async def test_failover_before_first_byte_when_connection_refused(fake_server):
    dead = dead_url()
    good = fake_server()
    async with OrpheusTTS([dead, good.url], hedge_ttfb_ms=None) as tts:
        stream = tts.stream("Hi.")
        pcm = await collect_all(stream)
        assert pcm == good.expected_pcm(3)
        assert stream.info.attempts == [dead, good.url]
        states = {e.url: e for e in tts.endpoints()}
        assert states[dead].consecutive_failures == 1


async def test_failover_before_audio_on_503_broken_stream_retryable_error_and_429(fake_server):
    a = fake_server(tone=1000)
    b = fake_server(tone=2000)
    a.script(Behaviour.http_error(503, "draining"), Behaviour.drop(after=0),
             Behaviour.error("overloaded", after=0),
             Behaviour.http_error(429, "rate_limit_exceeded"))
    async with OrpheusTTS([a.url, b.url], hedge_ttfb_ms=None, failure_threshold=10) as tts:
        for _ in range(4):
            stream = tts.stream("Hi.")
            assert await collect_all(stream) == b.expected_pcm(3)
            assert stream.info.attempts == [a.url, b.url]


async def test_client_error_is_not_retried_elsewhere(fake_server):
    a = fake_server()
    b = fake_server()
    a.script(Behaviour.http_error(400, "invalid_request", retry_after_s=None))
    async with OrpheusTTS([a.url, b.url], hedge_ttfb_ms=None) as tts:
        with pytest.raises(HTTPStatusError) as info:
            await tts.synthesize("Hi.")
    assert info.value.status_code == 400
    assert len(b.stream_requests) == 0


async def test_failover_attempts_are_bounded(fake_server):
    servers = [fake_server() for _ in range(3)]
    for srv in servers:
        srv.default = Behaviour.http_error(503, "overloaded")
    async with OrpheusTTS([s.url for s in servers], hedge_ttfb_ms=None, max_attempts=2) as tts:
        with pytest.raises(httpx.HTTPStatusError) as info:
            await tts.synthesize("Hi.")
    assert info.value.response.status_code == 503
    assert [len(s.stream_requests) for s in servers] == [1, 1, 0]


@pytest.mark.parametrize(
    "failure, expected",
    [
        (Behaviour.drop(after=2), httpx.RemoteProtocolError),
        (Behaviour.eof(after=2), IncompleteStreamError),
        (Behaviour.error("upstream_lost", after=2), StreamError),
    ],
)
async def test_never_retries_after_audio_bytes(fake_server, failure, expected):
    a = fake_server()
    b = fake_server()
    a.script(failure)
    async with OrpheusTTS([a.url, b.url], hedge_ttfb_ms=None) as tts:
        chunks: list[bytes] = []
        with pytest.raises(expected):
            async for chunk in tts.stream("Hi."):
                chunks.append(chunk)
    assert b"".join(chunks) == a.expected_pcm(2)
    assert len(b.stream_requests) == 0  # no second request: it would duplicate audio


# A failure that blames the endpoint (`ErrorCode.endpoint_fault`): an internal error.
SICK = Behaviour.http_error(500, p.ErrorCode.INTERNAL, retry_after_s=None)


async def test_busy_is_not_broken_overloaded_and_draining_leave_the_breaker_closed(fake_server):
    srv = fake_server()
    srv.script(Behaviour.http_error(503, p.ErrorCode.OVERLOADED),
               Behaviour.http_error(503, p.ErrorCode.DRAINING),
               Behaviour.error(p.ErrorCode.OVERLOADED, after=0))
    async with OrpheusTTS([srv.url], failure_threshold=1, cooldown_s=60) as tts:
        for _ in range(2):
            with pytest.raises(HTTPStatusError):
                await tts.synthesize("Hi.")
        with pytest.raises(StreamError):
            await tts.synthesize("Hi.")
        assert tts.endpoints()[0].breaker == "closed"
        assert await tts.synthesize("Hi.") == srv.expected_pcm(3)


async def test_breaker_opens_then_lets_one_probe_through_and_closes_on_success(fake_server):
    srv = fake_server()
    srv.script(SICK, SICK)
    async with OrpheusTTS([srv.url], failure_threshold=2, cooldown_s=1.5) as tts:
        for _ in range(2):
            with pytest.raises(HTTPStatusError):
                await tts.synthesize("Hi.")
        assert tts.endpoints()[0].breaker == "open"

        with pytest.raises(RuntimeError, match="Circuit open for endpoint") as info:
            await tts.synthesize("Hi.")
        assert isinstance(info.value, CircuitOpenError)
        assert len(srv.stream_requests) == 2  # refused locally, the sick server was spared

        await asyncio.sleep(1.6)
        assert tts.endpoints()[0].breaker == "half_open"
        # One probe at a time: while it is in flight, other requests are refused.
        srv.script(Behaviour.normal(chunks=2, first_delay_s=1.0))
        probe = asyncio.ensure_future(tts.synthesize("probe"))
        await srv.await_until(lambda: srv.open_streams == 1)
        with pytest.raises(CircuitOpenError):
            await tts.synthesize("Hi.")
        assert await probe == srv.expected_pcm(2)

        assert tts.endpoints()[0].breaker == "closed"
        assert tts.endpoints()[0].consecutive_failures == 0
        assert await tts.synthesize("Hi.") == srv.expected_pcm(3)


async def test_failed_probe_reopens_the_breaker(fake_server):
    srv = fake_server()
    srv.default = SICK
    async with OrpheusTTS([srv.url], failure_threshold=1, cooldown_s=1.0) as tts:
        with pytest.raises(HTTPStatusError):
            await tts.synthesize("Hi.")
        await asyncio.sleep(1.1)
        with pytest.raises(HTTPStatusError):  # the probe
            await tts.synthesize("Hi.")
        with pytest.raises(CircuitOpenError):
            await tts.synthesize("Hi.")
    assert len(srv.stream_requests) == 2


async def test_open_breaker_routes_around_the_endpoint(fake_server):
    sick = fake_server()
    well = fake_server()
    sick.default = SICK
    async with OrpheusTTS([sick.url, well.url], hedge_ttfb_ms=None, failure_threshold=1,
                          cooldown_s=60) as tts:
        for _ in range(3):
            await tts.synthesize("Hi.")
        assert {e.url: e.breaker for e in tts.endpoints()} == {sick.url: "open",
                                                               well.url: "closed"}
    assert len(sick.stream_requests) == 1 and len(well.stream_requests) == 3


async def test_scoring_prefers_the_low_queue_endpoint(fake_server):
    busy = fake_server(queue_depth=8)
    idle = fake_server(queue_depth=0)
    async with OrpheusTTS([busy.url, idle.url], hedge_ttfb_ms=None) as tts:
        for _ in range(4):
            await tts.synthesize("Hi.")
        snapshot = {e.url: e for e in tts.endpoints()}
    # Nothing known at first: the first request goes to the first URL and learns its queue;
    # the second explores the other; from then on the idle one wins.
    assert len(busy.stream_requests) == 1 and len(idle.stream_requests) == 3
    assert snapshot[busy.url].queue_depth == 8 and snapshot[idle.url].queue_depth == 0
    assert snapshot[idle.url].score_ms < snapshot[busy.url].score_ms


async def test_queue_hints_follow_the_latest_response(fake_server):
    srv = fake_server()
    srv.script(Behaviour.normal(queue_depth=5))
    async with OrpheusTTS([srv.url]) as tts:
        await tts.synthesize("Hi.")
        assert tts.endpoints()[0].queue_depth == 5
        srv.queue_depth = 2
        await tts.synthesize("Hi.")
        assert tts.endpoints()[0].queue_depth == 2


async def collect_all(stream) -> bytes:
    return b"".join([c async for c in stream])
