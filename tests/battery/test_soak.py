"""100 consecutive messages over one SDK client and over one WebSocket, on the real local stack:
every one ends explicitly (`eos` / `done`), and afterwards nothing is left behind: no asyncio
tasks, file descriptors or sockets in this process, no streams or engine requests in the
workers, no inflight stream in the gateway. Resident memory growth is reported and bounded."""

from __future__ import annotations

import asyncio

import pytest

from orpheus_tts.sdk import OrpheusTTS
from tests.battery.support import (QUICK, Resources, WsClient, accepted_connections, settle,
                                   tcp_connections_to)

pytestmark = [pytest.mark.engine, pytest.mark.timeout(900)]  # incl. starting the engines

MESSAGES = 100
MIB = 1 << 20
# A worker's first few dozen messages grow it by 100-200 MiB (torch and SNAC buffers, allocator
# arenas); then it levels off: 8-11 MiB more per worker from message 50 to 400 of
# `make bench-memory`. So the whole run's growth is reported and loosely bounded, and the second
# half, where only a leak keeps growing, is bounded tightly: 32 MiB over 50 messages catches
# anything that keeps 0.6 MiB per message (a stream's PCM or an engine request).
GATEWAY_RSS_GROWTH = 64 * MIB
WORKER_RSS_GROWTH = 256 * MIB
SECOND_HALF_RSS_GROWTH = 32 * MIB


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def _quiet(stack) -> None:
    load = stack.wait_idle(60)
    assert all(v == (0, 0) for v in load.values()), f"workers not idle: {load}"
    # the gateway's own streams, and its (polled) view of the workers' streams
    snap = await settle(lambda: (lambda s: s if s["inflight"] == 0 and
                                 s.get("gateway_inflight", 0) == 0 else None)(stack.system()))
    assert snap, f"gateway still counts streams: {stack.system()}"


def _rss_report(before: Resources, halfway: dict[str, int], after: Resources,
                record_property) -> None:
    for name, rss in after.rss.items():
        growth = rss - before.rss.get(name, rss)
        late = rss - halfway.get(name, rss)
        record_property(f"rss_growth_{name}_mib", round(growth / MIB, 1))
        record_property(f"rss_growth_second_half_{name}_mib", round(late / MIB, 1))
        print(f"RSS {name}: {before.rss.get(name, 0) / MIB:.0f} -> "
              f"{halfway.get(name, 0) / MIB:.0f} -> {rss / MIB:.0f} MiB "
              f"({growth / MIB:+.1f}, second half {late / MIB:+.1f})")
        bound = GATEWAY_RSS_GROWTH if name == "gateway" else WORKER_RSS_GROWTH
        assert growth < bound, f"{name} grew {growth / MIB:.0f} MiB over {MESSAGES} messages"
        assert late < SECOND_HALF_RSS_GROWTH, \
            f"{name} still grew {late / MIB:.0f} MiB over the last {MESSAGES // 2} messages"


async def _leak_checks(stack, before: Resources) -> Resources:
    gw_port = _port(stack.url)
    assert await settle(lambda: tcp_connections_to(gw_port) == 0), "client sockets left open"
    assert await settle(lambda: accepted_connections(stack.gateway.proc.pid, gw_port) == 0), \
        "the gateway still holds client connections"
    await _quiet(stack)
    after = Resources.take(stack)
    assert after.tasks <= before.tasks, "asyncio tasks leaked"
    assert after.fds <= before.fds + 2, f"file descriptors leaked: {before.fds} -> {after.fds}"
    return after


class Halfway:
    """Both sequences pause after message 50 until the halfway memory sample is taken."""

    def __init__(self) -> None:
        self.arrived = asyncio.Event()
        self.resume = asyncio.Event()
        self._waiting = 0

    async def reached(self) -> None:
        self._waiting += 1
        if self._waiting == 2:
            self.arrived.set()
        await self.resume.wait()


async def _sdk_sequence(stack, halfway: Halfway) -> None:
    async with OrpheusTTS([stack.url], api_key=stack.api_key, hedge_ttfb_ms=None) as tts:
        for i in range(MESSAGES):
            if i == MESSAGES // 2:
                await halfway.reached()
            stream = tts.stream(f"Message number {i}.", **QUICK)
            received = 0
            async for chunk in stream:
                received += len(chunk)
            assert stream.info.eos is not None, f"SDK message {i} ended without eos"
            assert received == stream.info.eos.samples * 2 > 0


async def _ws_sequence(stack, halfway: Halfway) -> None:
    async with WsClient(stack.url, stack.api_key) as ws:
        for i in range(MESSAGES):
            if i == MESSAGES // 2:
                await halfway.reached()
            uid = f"m-{i}"
            await ws.speak(uid, f"Message number {i}.", QUICK)
            terminal = await ws.wait_terminal(uid, 120)
            u = ws.utterances[uid]
            assert terminal["type"] == "done", terminal
            assert sum(map(len, u.audio)) == terminal["stats"]["samples"] * 2 > 0
            assert u.audio_after_terminal == 0
        assert ws.unattributed == []
    assert ws.closed_code in (1000, None)


async def test_hundred_messages_over_one_sdk_client_and_over_one_websocket(local_stack,
                                                                           record_property):
    """The two sequences run side by side (each strictly one message after the other), so the
    two workers share the load; the leak checks come after both."""
    async with OrpheusTTS([local_stack.url], api_key=local_stack.api_key,
                          hedge_ttfb_ms=None) as tts:  # warm-up, outside the measurement
        async for _ in tts.stream("Warm up.", **QUICK):
            pass
    async with WsClient(local_stack.url, local_stack.api_key) as ws:
        await ws.speak("warm", "Warm up.", QUICK)
        await ws.wait_terminal("warm", 120)
    await _quiet(local_stack)
    before = Resources.take(local_stack)

    halfway = Halfway()
    sequences = asyncio.gather(_sdk_sequence(local_stack, halfway),
                               _ws_sequence(local_stack, halfway))
    arrived = asyncio.ensure_future(halfway.arrived.wait())
    await asyncio.wait([arrived, sequences], return_when=asyncio.FIRST_COMPLETED)
    if not arrived.done():  # a sequence failed before its halfway message
        arrived.cancel()
        await sequences
    halfway_rss = Resources.take(local_stack).rss
    halfway.resume.set()
    await sequences

    after = await _leak_checks(local_stack, before)
    _rss_report(before, halfway_rss, after, record_property)
