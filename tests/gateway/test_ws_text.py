"""Streamed text on `WS /v1/tts/ws` (`open`, `append`, `flush`, `end`, `interrupt`) against a
live gateway and fake workers."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from websockets.exceptions import ConnectionClosed

from orpheus_tts import protocol as p
from tests.gateway.conftest import API_KEY
from tests.gateway.test_ws import open_session


async def _send(ws, **msg) -> None:
    await ws.send(json.dumps(msg))


async def test_text_in_pieces_is_cut_into_segments_spoken_in_order(fake_server, gateway_server):
    srv = fake_server(chunks=3, chunk_delay_ms=5)
    gw = gateway_server([srv.url])
    gw.wait_polled()
    pieces = ["Hello there", ", my friend.", " The weather", " is fine today,", " and the",
              " sun is out. See", " you soon."]
    ws, s = await open_session(gw)
    async with ws:
        await _send(ws, type="open", utterance_id="u", voice="tara", params={"seed": 7})
        for piece in pieces:
            await _send(ws, type="append", utterance_id="u", text=piece)
            await asyncio.sleep(0.01)
        await _send(ws, type="end", utterance_id="u")
        await s.pump(lambda: bool(s.terminals["u"]))
    assert not s.violations and not s.session_errors
    assert [m["type"] for m in s.terminals["u"]] == ["done"]
    segments = [m for m in s.other if m["type"] == "segment"]
    assert [m["index"] for m in segments] == list(range(len(segments)))
    assert len(segments) >= 3
    texts = [r.body["text"] for r in srv.stream_requests]
    assert texts == [m["text"] for m in segments]
    assert " ".join(texts) == "".join(pieces)
    assert all(r.body["voice"] == "tara" and r.body["seed"] == 7 for r in srv.stream_requests)
    pcm = b"".join(chunk for _, chunk in s.audio["u"])
    assert pcm == srv.expected_pcm(3) * len(segments)
    assert s.terminals["u"][0]["stats"]["segments"] == len(segments)


async def test_cancel_mid_way_aborts_every_segment_stream(fake_server, gateway_server):
    srv = fake_server(chunks=400, chunk_delay_ms=10)
    gw = gateway_server([srv.url])
    gw.wait_polled()
    ws, s = await open_session(gw)
    async with ws:
        await _send(ws, type="open", utterance_id="u")
        await _send(ws, type="append", utterance_id="u",
                    text="The first sentence is here. The second one follows. And a third. ")
        await s.pump(lambda: len(s.audio["u"]) >= 2)
        # The next segment starts once the head has its first audio, long before it ends.
        assert await srv.await_until(lambda: srv.open_streams == 2)
        sent = time.monotonic()
        await _send(ws, type="cancel", utterance_id="u")
        await s.pump(lambda: bool(s.terminals["u"]))
        acked = time.monotonic() - sent
        await asyncio.sleep(0.1)
        while True:
            try:
                s.take(await asyncio.wait_for(ws.recv(), 0.1))
            except asyncio.TimeoutError:
                break
    assert [m["type"] for m in s.terminals["u"]] == ["cancelled"]
    assert acked < 0.5  # loopback; the pipeline itself is held to 100 ms in test_textstream
    assert not s.violations
    assert srv.wait_until(lambda: srv.open_streams == 0 and srv.cancelled_streams == 2), \
        srv.stats()
    assert len(srv.stream_requests) == 2  # the third segment was never started
    assert gw.wait_until(lambda: all(w.local_inflight == 0 for w in gw.gateway.pool))
    assert gw.wait_until(lambda: gw.gateway.limiter.active_streams(
        gw.gateway.keys.identify(API_KEY)) == 0)


async def test_interrupt_cancels_queued_and_speaking_and_the_session_goes_on(
        fake_server, gateway_server):
    srv = fake_server(chunks=200, chunk_delay_ms=10)
    gw = gateway_server([srv.url])
    gw.wait_polled()
    ws, s = await open_session(gw)
    async with ws:
        await s.speak("a", text="first")
        await _send(ws, type="open", utterance_id="b")
        await _send(ws, type="append", utterance_id="b", text="Queued text that waits here. ")
        await s.pump(lambda: len(s.audio["a"]) >= 1)
        assert len(srv.stream_requests) == 1  # "b" only buffers while queued
        await _send(ws, type="interrupt")
        await s.pump(lambda: bool(s.terminals["a"]) and bool(s.terminals["b"]))
        await _send(ws, type="open", utterance_id="c")
        await _send(ws, type="append", utterance_id="c", text="After the interrupt.")
        await _send(ws, type="flush", utterance_id="c")
        await s.pump(lambda: len(s.audio["c"]) >= 1)
        await _send(ws, type="cancel", utterance_id="c")
        await s.pump(lambda: bool(s.terminals["c"]))
    assert [m["type"] for m in s.terminals["a"]] == ["cancelled"]
    assert [m["type"] for m in s.terminals["b"]] == ["cancelled"]
    assert [m["type"] for m in s.terminals["c"]] == ["cancelled"]
    assert not s.audio["b"] and not s.violations
    assert srv.stream_requests[-1].body["text"] == "After the interrupt."
    assert srv.wait_until(lambda: srv.open_streams == 0)


async def test_bad_text_messages_are_refused_with_an_error_and_the_session_goes_on(
        fake_server, gateway_server):
    srv = fake_server(chunks=2)
    gw = gateway_server([srv.url])
    gw.wait_polled()
    ws, s = await open_session(gw)
    async with ws:
        await _send(ws, type="append", utterance_id="nobody", text="hi")
        await _send(ws, type="open", utterance_id="v", voice="no-such-voice")
        await _send(ws, type="open", utterance_id="u")
        await _send(ws, type="append", utterance_id="u", text="Short and sweet.")
        await _send(ws, type="end", utterance_id="u")
        await _send(ws, type="append", utterance_id="u", text="too late")
        await s.speak("w", text="a speak takes no appends")
        await _send(ws, type="flush", utterance_id="w")
        await s.pump(lambda: bool(s.terminals["u"]) and bool(s.terminals["w"])
                     and len(s.session_errors) >= 3)
    assert [m["type"] for m in s.terminals["u"]] == ["done"]
    assert [m["code"] for m in s.terminals["v"]] == [p.ErrorCode.UNKNOWN_VOICE]
    assert len(s.session_errors) == 3
    assert all(e["code"] == p.ErrorCode.INVALID_REQUEST for e in s.session_errors)
    assert [r.body["text"] for r in srv.stream_requests] == [
        "Short and sweet.", "a speak takes no appends"]


@pytest.mark.parametrize("then", [
    {"type": "append", "utterance_id": "u", "text": "Said, and then nothing more"},
    pytest.param({"type": "speak", "utterance_id": "v", "text": "Queued behind it."},
                 id="a-speak-queued-behind-it"),
])
async def test_an_open_utterance_left_without_text_does_not_keep_the_session(
        fake_server, gateway_server, then):
    srv = fake_server(chunks=2)
    gw = gateway_server([srv.url], ws_idle_timeout_s=1.0)
    gw.wait_polled()
    ws, s = await open_session(gw)
    async with ws:
        await _send(ws, type="open", utterance_id="u")
        await _send(ws, **then)
        with pytest.raises(ConnectionClosed) as closed:
            await s.pump(lambda: False, timeout=6)
    assert closed.value.rcvd.code == p.WS_CLOSE_IDLE
    assert len(s.audio["u"]) == 2 * len(srv.stream_requests)  # it spoke what it had
    if then["type"] == "speak":
        assert srv.stream_requests == []  # nothing was ever spoken
    else:
        assert srv.stream_requests  # what it had was spoken
    assert all([m["type"] for m in s.terminals[u]] == ["cancelled"]
               for u in {"u", then["utterance_id"]})


async def test_an_append_over_the_message_limit_fails_its_utterance_rather_than_a_hole(
        fake_server, gateway_server):
    srv = fake_server(chunks=1)
    gw = gateway_server([srv.url])
    gw.wait_polled()
    ws, s = await open_session(gw)
    async with ws:
        await _send(ws, type="open", utterance_id="u")
        await _send(ws, type="append", utterance_id="u", text="Before the long part. ")
        await _send(ws, type="append", utterance_id="u", text="word " * 1000)
        await _send(ws, type="append", utterance_id="u", text="After it.")
        await _send(ws, type="end", utterance_id="u")
        await s.pump(lambda: bool(s.terminals["u"]))
    assert [m.get("code") for m in s.terminals["u"]] == [p.ErrorCode.TEXT_TOO_LONG]
