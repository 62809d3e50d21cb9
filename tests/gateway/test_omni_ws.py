"""vLLM-Omni's `WS /v1/audio/speech/stream` against a live gateway and fake workers, driven the
way vLLM-Omni's own streaming client drives it."""

from __future__ import annotations

import asyncio
import io
import json
import wave

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from orpheus_tts import protocol as p
from orpheus_tts.protocol import omni as po
from tests.gateway.conftest import auth
from tests.support.fake_server import Behaviour

TEXT = "Hello world. How are you today? I am fine, thank you."


async def _utterance(ws, text: str, delay: float = 0.005) -> None:
    words = text.split(" ")
    for i, word in enumerate(words):
        await ws.send(json.dumps({"type": "input.text",
                                  "text": word + (" " if i < len(words) - 1 else "")}))
        await asyncio.sleep(delay)
    await ws.send(json.dumps({"type": "input.done"}))


async def _receive(ws) -> list:
    """Everything until `session.done` (JSON as dicts, audio as bytes)."""
    out: list = []
    while True:
        msg = await asyncio.wait_for(ws.recv(), 20)
        out.append(msg if isinstance(msg, bytes) else json.loads(msg))
        if isinstance(out[-1], dict) and out[-1]["type"] == "session.done":
            return out


def _connect(gw, **kw):
    return connect(gw.ws_url + po.OMNI_SPEECH_STREAM_PATH, additional_headers=auth(),
                   open_timeout=5, **kw)


async def test_two_utterances_as_wav_sentences_on_one_connection(fake_server, gateway_server):
    srv = fake_server(chunks=3, chunk_delay_ms=5)
    gw = gateway_server([srv.url])
    gw.wait_polled()
    async with _connect(gw) as ws:
        await ws.send(json.dumps({"type": "session.config", "speaker": "tara",
                                  "response_format": "wav", "split_granularity": "sentence"}))
        for index, text in enumerate([TEXT, "Second utterance, same connection."]):
            sender = asyncio.create_task(_utterance(ws, text))
            got = await _receive(ws)
            await sender
            starts = [m for m in got if isinstance(m, dict) and m["type"] == "audio.start"]
            dones = [m for m in got if isinstance(m, dict) and m["type"] == "audio.done"]
            files = [m for m in got if isinstance(m, bytes)]
            assert got[-1] == {"type": "session.done", "utterance_index": index,
                               "total_sentences": len(starts), "error": False}
            assert [m["sentence_index"] for m in starts] == list(range(len(starts)))
            assert " ".join(m["sentence_text"] for m in starts) == text
            assert len(files) == len(dones) == len(starts)
            for f, done in zip(files, dones):
                assert done["total_bytes"] == len(f) and not done["error"]
                with wave.open(io.BytesIO(f)) as w:
                    assert w.getframerate() == p.SAMPLE_RATE and w.getnchannels() == 1
                    assert w.readframes(w.getnframes()) == srv.expected_pcm(3)
            # Order: start, its file, its done; sentence after sentence.
            kinds = [m["type"] if isinstance(m, dict) else "bytes" for m in got[:-1]]
            assert kinds == ["audio.start", "bytes", "audio.done"] * len(starts)
        assert len(starts) == 1  # the second utterance is one sentence
        await ws.send(json.dumps({"type": "session.close"}))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd.code == 1000
    assert all(r.body["voice"] == "tara" for r in srv.stream_requests)


async def test_stream_audio_sends_pcm_chunks_as_they_come(fake_server, gateway_server):
    srv = fake_server(chunks=4, chunk_delay_ms=5)
    gw = gateway_server([srv.url])
    gw.wait_polled()
    async with _connect(gw) as ws:
        await ws.send(json.dumps({"type": "session.config", "response_format": "pcm",
                                  "stream_audio": True, "split_granularity": "clause",
                                  "seed": 5}))
        sender = asyncio.create_task(_utterance(ws, TEXT))
        got = await _receive(ws)
        await sender
    starts = [m for m in got if isinstance(m, dict) and m["type"] == "audio.start"]
    chunks = [m for m in got if isinstance(m, bytes)]
    assert len(chunks) == 4 * len(starts)
    assert b"".join(chunks) == srv.expected_pcm(4) * len(starts)
    assert [r.body["text"] for r in srv.stream_requests] == [m["sentence_text"] for m in starts]
    assert all(r.body["seed"] == 5 for r in srv.stream_requests)


async def test_refusals_and_a_client_that_leaves_mid_utterance(fake_server, gateway_server):
    srv = fake_server(chunks=400, chunk_delay_ms=10)
    gw = gateway_server([srv.url])
    gw.wait_polled()
    async with connect(gw.ws_url + po.OMNI_SPEECH_STREAM_PATH, open_timeout=5) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd.code == p.WS_CLOSE_UNAUTHORIZED
    async with _connect(gw) as ws:
        await ws.send(json.dumps({"type": "input.text", "text": "too early"}))
        await ws.send(json.dumps({"type": "session.config", "response_format": "mp3"}))
        await ws.send(json.dumps({"type": "session.config", "ref_audio": "x.wav"}))
        await ws.send(json.dumps({"type": "session.config", "voice": "no-such-voice"}))
        errors = [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(4)]
        assert [e["code"] for e in errors] == [
            p.ErrorCode.INVALID_REQUEST, p.ErrorCode.UNSUPPORTED_FORMAT,
            p.ErrorCode.UNKNOWN_PARAMETER, p.ErrorCode.UNKNOWN_VOICE]
        await ws.send(json.dumps({"type": "session.config", "response_format": "pcm",
                                  "stream_audio": True}))
        await ws.send(json.dumps({"type": "input.text", "text": TEXT + " "}))
        first = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert first["type"] == "audio.start"
        assert isinstance(await asyncio.wait_for(ws.recv(), 5), bytes)
    # The client left mid-utterance: every segment stream it had open is aborted.
    assert srv.wait_until(lambda: srv.open_streams == 0 and srv.cancelled_streams >= 1)
    assert srv.completed_streams == 0
    assert gw.wait_until(lambda: all(w.local_inflight == 0 for w in gw.gateway.pool))


async def test_text_after_a_failed_utterance_is_not_spoken_as_a_new_one(
        fake_server, gateway_server):
    srv = fake_server(chunks=2)
    srv.script(Behaviour.error(p.ErrorCode.ENGINE_ERROR, after=1))
    gw = gateway_server([srv.url])
    gw.wait_polled()
    async with _connect(gw) as ws:
        await ws.send(json.dumps({"type": "session.config", "response_format": "pcm"}))
        await ws.send(json.dumps({"type": "input.text", "text": "The first sentence fails. "}))
        failed = await _receive(ws)
        assert failed[-1] == {"type": "session.done", "utterance_index": 0,
                              "total_sentences": 1, "error": True}
        # The LLM goes on writing the same reply, then ends it.
        await ws.send(json.dumps({"type": "input.text", "text": "The rest of that reply, "}))
        await ws.send(json.dumps({"type": "input.text", "text": "which goes on a while. "}))
        await ws.send(json.dumps({"type": "input.done"}))
        await _utterance(ws, "The next reply is its own.")
        nxt = await _receive(ws)
    assert nxt[-1]["type"] == "session.done" and nxt[-1]["error"] is False
    assert [m["sentence_text"] for m in nxt if isinstance(m, dict)
            and m["type"] == "audio.start"] == ["The next reply is its own."]
    assert nxt[-1]["utterance_index"] == 1
    assert [r.body["text"] for r in srv.stream_requests] == [
        "The first sentence fails.", "The next reply is its own."]


async def test_a_client_that_leaves_after_session_close_aborts_the_engine_request(
        fake_server, gateway_server):
    srv = fake_server(chunks=1000, chunk_delay_ms=10)  # ten seconds of one sentence
    gw = gateway_server([srv.url])
    gw.wait_polled()
    async with _connect(gw) as ws:
        await ws.send(json.dumps({"type": "session.config", "response_format": "wav"}))
        await ws.send(json.dumps({"type": "input.text", "text": "One long sentence to say."}))
        await ws.send(json.dumps({"type": "session.close"}))
        start = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert start["type"] == "audio.start"
    # The client is gone: its one engine request is aborted, not generated to the end.
    assert srv.wait_until(lambda: srv.open_streams == 0 and srv.cancelled_streams == 1,
                          timeout=3)
    assert srv.completed_streams == 0


async def test_text_over_the_message_limit_fails_its_utterance_rather_than_being_skipped(
        fake_server, gateway_server):
    srv = fake_server(chunks=1)
    gw = gateway_server([srv.url])
    gw.wait_polled()
    async with _connect(gw) as ws:
        await ws.send(json.dumps({"type": "session.config", "response_format": "pcm"}))
        await ws.send(json.dumps({"type": "input.text", "text": "Before the long part. "}))
        await ws.send(json.dumps({"type": "input.text", "text": "word " * 1000}))
        await ws.send(json.dumps({"type": "input.text", "text": "After it."}))
        await ws.send(json.dumps({"type": "input.done"}))
        out = await _receive(ws)
    assert out[-1]["type"] == "session.done" and out[-1]["error"] is True
