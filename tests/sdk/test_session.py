"""`OrpheusTTS.stream_text` and `Session` against a live gateway and fake workers: text in
pieces, several utterances on one socket, interrupt, and the lifecycle laws."""

from __future__ import annotations

import asyncio

import pytest

from orpheus_tts import protocol as p
from orpheus_tts.errors import IncompleteStreamError, StreamError
from orpheus_tts.sdk import OrpheusTTS
from tests.gateway.conftest import API_KEY, gateway_server  # noqa: F401 - a fixture

TOKENS = ["Hello", " there", ", my", " friend.", " The", " weather", " is", " fine", " today,",
          " and", " the", " sun", " is", " out.", " See", " you", " soon."]


async def llm(tokens=TOKENS, delay: float = 0.005, fail_after: int | None = None):
    for i, token in enumerate(tokens):
        if fail_after is not None and i == fail_after:
            raise ValueError("the LLM failed")
        await asyncio.sleep(delay)
        yield token


@pytest.fixture
def stack(fake_server, gateway_server):  # noqa: F811
    def make(**kw):
        srv = fake_server(**kw)
        gw = gateway_server([srv.url])
        gw.wait_polled()
        return srv, gw
    return make


async def test_stream_text_speaks_tokens_as_they_come(stack):
    srv, gw = stack(chunks=3, chunk_delay_ms=5)
    async with OrpheusTTS([gw.url], api_key=API_KEY) as tts:
        pcm = b"".join([c async for c in tts.stream_text(llm(), voice="tara", seed=3)])
        assert tts.endpoints()[0].active == 0
    segments = [r.body["text"] for r in srv.stream_requests]
    assert len(segments) >= 3 and " ".join(segments) == "".join(TOKENS)
    assert all(r.body["voice"] == "tara" and r.body["seed"] == 3 for r in srv.stream_requests)
    assert pcm == srv.expected_pcm(3) * len(segments)


async def test_a_failing_text_source_cancels_the_utterance_and_raises(stack):
    srv, gw = stack(chunks=300, chunk_delay_ms=10)
    async with OrpheusTTS([gw.url], api_key=API_KEY) as tts:
        with pytest.raises(ValueError, match="the LLM failed"):
            async for _ in tts.stream_text(llm(fail_after=8, delay=0.05)):
                pass
    assert srv.wait_until(lambda: srv.open_streams == 0 and srv.cancelled_streams >= 1)


async def test_a_session_speaks_several_utterances_and_interrupt_stops_them(stack):
    srv, gw = stack(chunks=200, chunk_delay_ms=10)
    async with OrpheusTTS([gw.url], api_key=API_KEY) as tts:
        async with tts.session(voice="tara") as session:
            first = await session.open()
            await first.send("A long first sentence to say. And more of it. ")
            second = await session.speak("Queued behind the first.")
            got = []
            async for pcm in first:
                got.append(pcm)
                if len(got) == 2:
                    await session.interrupt()
            assert len(got) == 2  # nothing is yielded after the interrupt
            assert [c async for c in second] == []
            assert await first.wait() == "cancelled" and await second.wait() == "cancelled"
            assert srv.wait_until(lambda: srv.open_streams == 0)
            srv.default = type(srv.default).normal(2)
            third = await session.speak("After the interrupt.")
            assert b"".join([c async for c in third]) == srv.expected_pcm(2)
            assert third.outcome == "done" and third.stats["chunks"] == 2
        await session.aclose()  # idempotent
    assert srv.stream_requests[-1].body["text"] == "After the interrupt."


async def test_errors_raise_and_a_lost_socket_is_never_a_silent_end(stack):
    srv, gw = stack(chunks=500, chunk_delay_ms=10)
    async with OrpheusTTS([gw.url], api_key=API_KEY) as tts:
        async with tts.session() as session:
            bad = await session.speak("hi", voice="no-such-voice")
            with pytest.raises(StreamError) as err:
                async for _ in bad:
                    pass
            assert err.value.code == p.ErrorCode.UNKNOWN_VOICE
            utt = await session.speak("A long one.")
            chunks = 0
            with pytest.raises(IncompleteStreamError):
                async for _ in utt:
                    chunks += 1
                    if chunks == 2:
                        gw.stop()  # the gateway goes away mid-utterance
            assert utt.outcome == "lost"


async def test_close_of_the_client_closes_its_sessions(stack):
    srv, gw = stack(chunks=500, chunk_delay_ms=10)
    tts = OrpheusTTS([gw.url], api_key=API_KEY)
    session = tts.session()
    await session.connect()
    utt = await session.speak("Speaking when the client closes.")
    await tts.close()
    await tts.close()
    with pytest.raises(IncompleteStreamError):
        async for _ in utt:
            pass
    assert tts.endpoints()[0].active == 0
    assert srv.wait_until(lambda: srv.open_streams == 0)


async def test_a_text_source_that_stalls_past_the_servers_idle_timeout_raises(
        fake_server, gateway_server):  # noqa: F811
    """The LLM stops producing and the server ends the idle session: `stream_text` raises at
    once rather than waiting on the stalled source for ever."""
    srv = fake_server(chunks=2)
    gw = gateway_server([srv.url], ws_idle_timeout_s=1.0)
    gw.wait_polled()

    async def stalls():
        yield "Hello there, my friend. "
        await asyncio.Event().wait()  # an LLM that never answers again

    async with OrpheusTTS([gw.url], api_key=API_KEY) as tts:
        got = []
        with pytest.raises((StreamError, IncompleteStreamError)):
            async with asyncio.timeout(8):
                async for pcm in tts.stream_text(stalls()):
                    got.append(pcm)
        assert b"".join(got) == srv.expected_pcm(2) * len(srv.stream_requests)  # it was spoken
    assert " ".join(r.body["text"] for r in srv.stream_requests) == "Hello there, my friend."
