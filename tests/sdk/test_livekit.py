"""The LiveKit Agents `TTS` (`streaming=True`) driven through LiveKit's own `SynthesizeStream`
and `AudioEmitter` (no room or media server) against a live gateway and fake workers."""

from __future__ import annotations

import asyncio

from livekit import rtc

from orpheus_tts import protocol as p
from orpheus_tts.integrations.livekit import OrpheusTTS
from tests.gateway.conftest import API_KEY, gateway_server  # noqa: F401 - a fixture

TOKENS = ["Hello", " there", ", my", " friend.", " The", " weather", " is", " fine", " today,",
          " and", " the", " sun", " is", " out."]


async def test_pushed_text_comes_out_as_24khz_frames_of_one_segment(fake_server, gateway_server):  # noqa: F811
    srv = fake_server(chunks=3, chunk_delay_ms=5)
    gw = gateway_server([srv.url])
    gw.wait_polled()
    tts = OrpheusTTS(base_url=gw.url, api_key=API_KEY, voice="tara")
    assert tts.capabilities.streaming and tts.sample_rate == p.SAMPLE_RATE
    events = []
    async with tts.stream() as stream:
        async def push() -> None:
            for token in TOKENS:
                stream.push_text(token)
                await asyncio.sleep(0.01)
            stream.end_input()

        pusher = asyncio.create_task(push())
        async for ev in stream:
            events.append(ev)
        await pusher
    await tts.aclose()
    frames = [ev.frame for ev in events]
    assert all(isinstance(f, rtc.AudioFrame) and f.sample_rate == p.SAMPLE_RATE
               and f.num_channels == 1 for f in frames)
    segments = [r.body["text"] for r in srv.stream_requests]
    assert len(segments) >= 2 and " ".join(segments) == "".join(TOKENS)
    pcm = b"".join(bytes(f.data) for f in frames)
    expected = srv.expected_pcm(3) * len(segments)
    assert pcm[:len(expected)] == expected and not pcm[len(expected):].strip(b"\0")
    assert len({ev.segment_id for ev in events}) == 1 and events[-1].is_final
    assert all(r.body["voice"] == "tara" for r in srv.stream_requests)


async def test_closing_the_stream_mid_utterance_aborts_the_engine_request(
        fake_server, gateway_server):  # noqa: F811
    srv = fake_server(chunks=500, chunk_delay_ms=10)
    gw = gateway_server([srv.url])
    gw.wait_polled()
    tts = OrpheusTTS(base_url=gw.url, api_key=API_KEY)
    stream = tts.stream()
    stream.push_text("A sentence that takes a long while to say. ")
    stream.push_text("And another one after it. ")
    got = 0
    async for _ in stream:
        got += 1
        if got == 2:
            break
    await stream.aclose()  # what an agent does on interruption
    assert srv.wait_until(lambda: srv.open_streams == 0 and srv.cancelled_streams >= 1)
    assert srv.completed_streams == 0
    after = []
    async for ev in stream:
        after.append(ev)
    assert after == []  # nothing comes after the close
    await tts.aclose()
