"""Rapid interrupt: utterances cancelled at random points. Every `cancel` is acknowledged with
`cancelled` within 100 ms, nothing of a cancelled utterance arrives after its acknowledgement,
and the workers end up with no stream and no engine request. Also the SDK side: streams
abandoned mid-way release their worker stream."""

from __future__ import annotations

import asyncio
import random

import pytest

from orpheus_tts.sdk import OrpheusTTS
from tests.battery.support import LONG, LONG_TEXT, WsClient, settle

pytestmark = [pytest.mark.engine, pytest.mark.timeout(900)]  # incl. starting the engines

UTTERANCES = 50
ACK_BUDGET_S = 0.100


async def test_fifty_cancels_at_random_points_are_acknowledged_within_100ms(local_stack):
    rng = random.Random(50)
    acks: list[float] = []
    finished_first = 0
    async with WsClient(local_stack.url, local_stack.api_key) as ws:
        for i in range(UTTERANCES):
            uid = f"cut-{i}"
            u = await ws.speak(uid, LONG_TEXT, LONG)
            point = rng.choice(["queued", "started", "audio"])
            if point == "started":
                await ws.wait(lambda: u.started or u.terminal is not None, 60)
            elif point == "audio":
                wanted = rng.randint(1, 3)
                await ws.wait(lambda: len(u.audio) >= wanted or u.terminal is not None, 120)
            if u.terminal is not None:  # it ended before we could cut it
                finished_first += 1
                continue
            sent = await ws.cancel(uid)
            terminal = await ws.wait_terminal(uid, 5)
            if terminal["type"] == "done":  # crossed on the wire with our cancel
                finished_first += 1
                continue
            assert terminal["type"] == "cancelled", terminal
            acks.append(u.terminal_at - sent)
        await asyncio.sleep(0.3)  # anything late would arrive now
        for u in ws.utterances.values():
            assert u.audio_after_terminal == 0, f"audio after the terminal of {u.id}"
    assert len(acks) >= UTTERANCES * 0.8, f"only {len(acks)} of {UTTERANCES} were cut"
    slow = [round(a * 1000, 1) for a in acks if a > ACK_BUDGET_S]
    print(f"cancelled acks: {len(acks)}, max {max(acks) * 1000:.1f} ms, "
          f"finished before the cut: {finished_first}")
    assert slow == [], f"acks over 100 ms: {slow}"
    load = local_stack.wait_idle(30)
    assert all(v == (0, 0) for v in load.values()), f"workers still busy: {load}"


async def test_interrupting_speak_cancels_the_active_utterance(local_stack):
    async with WsClient(local_stack.url, local_stack.api_key) as ws:
        first = await ws.speak("a", LONG_TEXT, LONG)
        await ws.wait(lambda: len(first.audio) >= 1, 120)
        second = await ws.speak("b", "Second.", {"max_tokens": 28}, interrupt=True)
        assert (await ws.wait_terminal("a", 5))["type"] == "cancelled"
        assert (await ws.wait_terminal("b", 120))["type"] == "done"
        assert len(second.audio) > 0 and first.audio_after_terminal == 0
    load = local_stack.wait_idle(30)
    assert all(v == (0, 0) for v in load.values()), load


async def test_sdk_streams_abandoned_mid_way_release_the_workers(local_stack):
    rng = random.Random(20)
    async with OrpheusTTS([local_stack.url], api_key=local_stack.api_key,
                          hedge_ttfb_ms=None) as tts:
        for i in range(20):
            keep = rng.randint(1, 3)
            stream = tts.stream(LONG_TEXT, **LONG)
            got = 0
            async for _chunk in stream:
                got += 1
                if got >= keep:
                    break
            await stream.aclose()
    load = local_stack.wait_idle(30)
    assert all(v == (0, 0) for v in load.values()), f"workers still busy: {load}"
    assert await settle(lambda: local_stack.system().get("gateway_inflight", 0) == 0)
