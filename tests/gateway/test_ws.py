"""`WS /v1/tts/ws` against a live gateway and fake workers: lifecycle, auth, cancels."""

from __future__ import annotations

import asyncio
import json
import random
from collections import defaultdict

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from orpheus_tts import protocol as p
from tests.gateway.conftest import API_KEY, auth


class Session:
    """Collects everything the server sends, checking the per-utterance rules as it goes."""

    def __init__(self, ws):
        self.ws = ws
        self.terminals: dict[str, list[dict]] = defaultdict(list)
        self.audio: dict[str, list[tuple[int, bytes]]] = defaultdict(list)
        self.session_errors: list[dict] = []
        self.other: list[dict] = []
        self.violations: list[str] = []

    async def speak(self, uid: str, text: str = "hello", **kw) -> None:
        await self.ws.send(json.dumps({"type": "speak", "utterance_id": uid, "text": text, **kw}))

    async def cancel(self, uid: str) -> None:
        await self.ws.send(json.dumps({"type": "cancel", "utterance_id": uid}))

    async def pump(self, until, timeout: float = 20.0) -> None:
        async def loop() -> None:
            while not until():
                self.take(await self.ws.recv())
        await asyncio.wait_for(loop(), timeout)

    def take(self, message) -> None:
        if isinstance(message, bytes):
            uid, seq, pcm = p.decode_ws_audio(message)
            if self.terminals[uid]:
                self.violations.append(f"audio for {uid} after its terminal message")
            if seq != len(self.audio[uid]):
                self.violations.append(f"audio seq gap for {uid}")
            self.audio[uid].append((seq, pcm))
            return
        msg = json.loads(message)
        if msg["type"] in p.WS_TERMINAL_TYPES:
            if msg.get("utterance_id") is None:
                self.session_errors.append(msg)
            else:
                self.terminals[msg["utterance_id"]].append(msg)
        else:
            self.other.append(msg)


async def open_session(gw, **kw) -> tuple:
    ws = await connect(gw.ws_url + p.WS_PATH, additional_headers=auth(), open_timeout=5, **kw)
    first = json.loads(await ws.recv())
    assert first == {"type": "ready"}
    return ws, Session(ws)


async def test_twenty_utterances_with_random_cancels(fake_server, gateway_server):
    srv = fake_server(chunks=8, chunk_samples=480, chunk_delay_ms=15)
    gw = gateway_server([srv.url])
    gw.wait_polled()
    rng = random.Random(20261122)
    ids = [f"utt-{i}" for i in range(20)]
    ws, s = await open_session(gw)
    cancel_tasks = []
    async with ws:
        async def cancel_later(uid: str, delay: float) -> None:
            await asyncio.sleep(delay)
            await s.cancel(uid)

        for uid in ids:
            await s.speak(uid, text=f"sentence {uid}")
            if rng.random() < 0.5:
                cancel_tasks.append(asyncio.create_task(cancel_later(uid, rng.uniform(0, 0.4))))
            await asyncio.sleep(rng.uniform(0, 0.05))
        await s.pump(lambda: all(s.terminals[u] for u in ids))
        await asyncio.gather(*cancel_tasks)
        await asyncio.sleep(0.2)  # anything late would show up now
        while True:
            try:
                s.take(await asyncio.wait_for(ws.recv(), 0.2))
            except asyncio.TimeoutError:
                break

    assert not s.violations
    for uid in ids:
        assert len(s.terminals[uid]) == 1, (uid, s.terminals[uid])
    kinds = {uid: s.terminals[uid][0]["type"] for uid in ids}
    assert set(kinds.values()) <= {"done", "cancelled"}
    assert "cancelled" in kinds.values() and "done" in kinds.values()
    for uid in ids:
        if kinds[uid] == "done":
            stats = s.terminals[uid][0]["stats"]
            assert sum(len(pcm) for _, pcm in s.audio[uid]) == stats["samples"] * 2
    # A cancel that raced a finished utterance gets a session-level error, never a second
    # terminal message for that utterance.
    assert all(e["code"] == p.ErrorCode.INVALID_REQUEST for e in s.session_errors)
    assert srv.wait_until(lambda: srv.open_streams == 0, timeout=5)  # worker inflight back to 0
    assert gw.wait_until(lambda: all(w.local_inflight == 0 for w in gw.gateway.pool))
    assert gw.wait_until(lambda: gw.gateway.limiter.active_streams(
        gw.gateway.keys.identify(API_KEY)) == 0)


async def test_speak_queues_and_interrupt_cancels_active_and_queued(fake_server, gateway_server):
    srv = fake_server(chunks=40, chunk_delay_ms=20)
    gw = gateway_server([srv.url])
    gw.wait_polled()
    ws, s = await open_session(gw)
    async with ws:
        await s.speak("a")
        await s.speak("b")
        await s.pump(lambda: len(s.audio["a"]) >= 2)
        assert not s.audio["b"]  # queued behind "a"
        await s.speak("c", interrupt=True)
        await s.pump(lambda: bool(s.terminals["c"]), timeout=10)
    assert [m["type"] for m in s.terminals["a"]] == ["cancelled"]
    assert [m["type"] for m in s.terminals["b"]] == ["cancelled"]
    assert [m["type"] for m in s.terminals["c"]] == ["done"]
    assert not s.audio["b"] and not s.violations
    started = [m["utterance_id"] for m in s.other if m["type"] == "started"]
    assert started == ["a", "c"]
    assert srv.wait_until(lambda: srv.cancelled_streams == 1 and srv.open_streams == 0)


async def test_errors_end_their_utterance_and_the_session_goes_on(fake_server, gateway_server):
    srv = fake_server(chunks=2)
    gw = gateway_server([srv.url], max_text_chars=20)
    gw.wait_polled()
    ws, s = await open_session(gw)
    async with ws:
        await ws.send("{nope")
        await ws.send(json.dumps({"type": "dance"}))
        await s.speak("long", text="x" * 21)
        await s.speak("badvoice", voice="nobody")
        await s.speak("badparam", params={"temperature": 7})
        await s.speak("ok")
        await s.speak("ok")  # duplicate while queued/active, or a new one after it ended
        await s.cancel("never-spoken")
        await ws.send(json.dumps({"type": "ping"}))
        await s.pump(lambda: bool(s.terminals["ok"]) and any(m["type"] == "pong"
                                                             for m in s.other))
    assert s.terminals["long"][0]["code"] == p.ErrorCode.TEXT_TOO_LONG
    assert s.terminals["badvoice"][0]["code"] == p.ErrorCode.UNKNOWN_VOICE
    assert s.terminals["badparam"][0]["code"] == p.ErrorCode.INVALID_REQUEST
    assert s.terminals["ok"][0]["type"] == "done"
    assert len(s.session_errors) >= 3  # bad JSON, unknown type, unknown cancel target
    assert all(e["utterance_id"] is None for e in s.session_errors)


async def test_worker_failure_is_an_error_message(fake_server, gateway_server):
    from tests.support.fake_server import Behaviour

    srv = fake_server(chunks=3)
    srv.script(Behaviour.drop(after=1))
    gw = gateway_server([srv.url])
    gw.wait_polled()
    ws, s = await open_session(gw)
    async with ws:
        await s.speak("x")
        await s.speak("y")
        await s.pump(lambda: bool(s.terminals["x"]) and bool(s.terminals["y"]))
    assert s.terminals["x"][0]["code"] == p.ErrorCode.UPSTREAM_LOST
    assert s.terminals["x"][0]["retryable"] is True
    assert len(s.audio["x"]) == 1
    assert s.terminals["y"][0]["type"] == "done"


async def test_client_disconnect_closes_the_upstream(fake_server, gateway_server):
    srv = fake_server(chunks=500, chunk_delay_ms=20)
    gw = gateway_server([srv.url])
    gw.wait_polled()
    ws, s = await open_session(gw)
    await s.speak("a")
    await s.pump(lambda: len(s.audio["a"]) >= 2)
    await ws.close()
    assert await srv.await_until(lambda: srv.cancelled_streams == 1 and srv.open_streams == 0)


async def test_close_message_cancels_what_is_left_and_closes(fake_server, gateway_server):
    srv = fake_server(chunks=500, chunk_delay_ms=20)
    gw = gateway_server([srv.url])
    gw.wait_polled()
    ws, s = await open_session(gw)
    await s.speak("a")
    await s.speak("b")
    await s.pump(lambda: len(s.audio["a"]) >= 1)
    await ws.send(json.dumps({"type": "close"}))
    with pytest.raises(ConnectionClosed):
        while True:
            s.take(await asyncio.wait_for(ws.recv(), 5))
    assert ws.close_code == 1000
    assert [m["type"] for m in s.terminals["a"]] == ["cancelled"]
    assert [m["type"] for m in s.terminals["b"]] == ["cancelled"]
    assert await srv.await_until(lambda: srv.open_streams == 0)


async def test_idle_timeout_closes_the_socket(fake_server, gateway_server):
    srv = fake_server(chunks=30, chunk_delay_ms=20)  # ~0.6 s of speaking: longer than idle
    gw = gateway_server([srv.url], ws_idle_timeout_s=0.4)
    gw.wait_polled()
    ws, s = await open_session(gw)
    await s.speak("a")
    await s.pump(lambda: bool(s.terminals["a"]))
    assert s.terminals["a"][0]["type"] == "done"  # speaking does not count as idle
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 3)
    assert ws.close_code == p.WS_CLOSE_IDLE


@pytest.mark.parametrize("how", ["query", "first-message"])
async def test_browser_style_auth(fake_server, gateway_server, how):
    srv = fake_server(chunks=2)
    gw = gateway_server([srv.url])
    gw.wait_polled()
    url = gw.ws_url + p.WS_PATH + (f"?api_key={API_KEY}" if how == "query" else "")
    async with connect(url, open_timeout=5) as ws:
        if how == "first-message":
            await ws.send(json.dumps({"type": "auth", "api_key": API_KEY}))
        assert json.loads(await ws.recv()) == {"type": "ready"}
        s = Session(ws)
        await s.speak("a")
        await s.pump(lambda: bool(s.terminals["a"]))
    assert s.terminals["a"][0]["type"] == "done"


@pytest.mark.parametrize("first", [{"type": "auth", "api_key": "wrong"},
                                   {"type": "speak", "utterance_id": "a", "text": "x"}])
async def test_no_valid_key_closes_with_4401(fake_server, gateway_server, first):
    srv = fake_server()
    gw = gateway_server([srv.url])
    async with connect(gw.ws_url + p.WS_PATH, open_timeout=5) as ws:
        await ws.send(json.dumps(first))
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
    assert ws.close_code == p.WS_CLOSE_UNAUTHORIZED
    assert not srv.stream_requests
