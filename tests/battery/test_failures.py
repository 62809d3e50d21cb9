"""Chaos on the real stack: a fault-injecting proxy between a gateway and the workers, a worker
drained with SIGTERM mid-stream, and a worker killed with SIGKILL mid-stream.

What must hold: every stream ends with exactly one terminal frame before its deadline (no hang,
no silent truncation); the SDK fails over before the first byte; breakers open and recover;
streams in flight on a SIGTERMed worker complete while new ones go to the other worker.
Tests run in file order and share the session's stack; killed workers are restarted.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import httpx
import pytest

from orpheus_tts import protocol as p
from orpheus_tts.sdk import OrpheusTTS
from tests.support.chaos_proxy import ChaosProxy, Faults
from tests.support.worker_proc import wait_draining

pytestmark = [pytest.mark.engine, pytest.mark.timeout(900)]  # incl. starting the engines

DEADLINE_S = 40.0
SHORT = {"max_tokens": 28}
MEDIUM_TEXT = "Every day he went out to sea and every evening he came back with his nets full."
MEDIUM = {"max_tokens": 140}  # a few seconds here: well inside the 30 s drain


async def stream_frames(client: httpx.AsyncClient, url: str, body: dict,
                        on_frame=None) -> tuple[int, list[dict]]:
    """POST a v1 stream; (status, frames). Checks the framing rule as it reads."""
    frames: list[dict] = []
    async with client.stream("POST", url + p.STREAM_PATH, json=body) as r:
        if r.status_code != 200:
            raw = await r.aread()
            err = json.loads(raw)["error"]  # OpenAI's error body, never a bare 5xx page
            assert err["code"], err
            return r.status_code, [{"type": "http_error", "status": r.status_code, **err}]
        async for line in r.aiter_lines():
            if not line.strip():
                continue
            assert not (frames and frames[-1]["type"] in p.TERMINAL_TYPES), \
                f"frame after the terminal: {line[:80]}"
            frame = json.loads(line)
            frames.append(frame)
            if on_frame is not None:
                await on_frame(frame)
    assert frames and frames[-1]["type"] in p.TERMINAL_TYPES, \
        f"stream ended without a terminal frame after {len(frames)} frames"
    return 200, frames


def worker_of(frames: list[dict]) -> str | None:
    return next((f.get("worker_id") for f in frames if f["type"] == "metrics"), None)


def gateway_workers(stack, url: str) -> dict[str, dict]:
    return {w["url"]: w for w in stack.system(url)["workers"]}


# --- chaos proxy between a gateway and the workers --------------------------------------------
@pytest.fixture(scope="module")
def chaos(local_stack):
    proxies = [ChaosProxy(int(u.rsplit(":", 1)[1]), seed=i).start()
               for i, u in enumerate(local_stack.worker_urls)]
    gateway = local_stack.start_gateway([px.url for px in proxies], name="gateway-chaos")
    try:
        local_stack.wait_ready([gateway], 60)
        yield gateway, proxies
    finally:
        local_stack.remove(gateway)
        for px in proxies:
            px.stop()


async def test_under_latency_jitter_drops_and_resets_every_stream_ends_explicitly(local_stack,
                                                                                   chaos):
    gateway, proxies = chaos
    faults = Faults(latency_s=0.005, jitter_s=0.02, drop_rate=0.1, reset_rate=0.15,
                    reset_after_bytes=(200, 30_000))
    for px in proxies:
        px.faults = faults
    outcomes: list[str] = []
    async with httpx.AsyncClient(headers=local_stack.headers(), trust_env=False,
                                 timeout=httpx.Timeout(DEADLINE_S + 10)) as client:
        async def one(i: int) -> None:
            body = {"text": f"Chaos message {i}.", "timeout_s": DEADLINE_S, **SHORT}
            status, frames = await asyncio.wait_for(
                stream_frames(client, gateway.url, body), DEADLINE_S + 5)
            last = frames[-1]
            outcomes.append(last["type"] if status == 200 else f"http {status} {last['code']}")
            if last["type"] == "error":
                assert last["code"] in (p.ErrorCode.UPSTREAM_LOST, p.ErrorCode.NO_WORKERS,
                                        p.ErrorCode.DEADLINE_EXCEEDED,
                                        p.ErrorCode.ENGINE_ERROR), last
            if status != 200:
                assert status in (429, 503), frames

        for batch in range(6):
            await asyncio.gather(*(one(batch * 4 + k) for k in range(4)))
    injected = sum(px.stats["dropped"] + px.stats["reset"] for px in proxies)
    print(f"outcomes: {sorted(outcomes)}; faults injected: {injected}")
    assert injected > 0, "the proxies injected nothing: the test proved nothing"
    assert outcomes.count("eos") >= len(outcomes) // 2, outcomes
    for px in proxies:
        px.faults = Faults()
    assert local_stack.wait_idle(60) == {c.name: (0, 0) for c in local_stack.workers}


async def test_gateway_breaker_opens_on_a_dead_path_and_recovers(local_stack, chaos):
    gateway, proxies = chaos
    sick, healthy = proxies
    sick.faults = Faults(drop_rate=1.0)
    # The path dies for the connections the gateway keeps alive too, not only for new ones.
    sick.reset_all()
    try:
        async with httpx.AsyncClient(headers=local_stack.headers(), trust_env=False,
                                     timeout=DEADLINE_S + 10) as client:
            deadline = time.monotonic() + 30
            while True:
                status, frames = await stream_frames(
                    client, gateway.url, {"text": "Still there?", "timeout_s": DEADLINE_S,
                                          **SHORT})
                # New connections down the sick path are dropped, so the gateway fails over
                # before the first byte (eos). A pooled connection the previous test's faults
                # were chosen for may still reset mid-stream: that must end explicitly.
                assert status == 200, frames
                last = frames[-1]
                assert last["type"] == "eos" or (
                    last["type"] == "error" and last["code"] == "upstream_lost"), last
                state = gateway_workers(local_stack, gateway.url)[sick.url]
                if state["breaker"] == "open" or not state["ready"]:
                    break  # the gateway stopped sending streams down the dead path
                assert time.monotonic() < deadline, f"breaker never opened: {state}"
    finally:
        sick.faults = Faults()
    deadline = time.monotonic() + 30
    while True:
        state = gateway_workers(local_stack, gateway.url)[sick.url]
        if state["breaker"] == "closed" and state["ready"]:
            break
        assert time.monotonic() < deadline, f"breaker never recovered: {state}"
        # a stream may be the half-open probe that closes it
        async with httpx.AsyncClient(headers=local_stack.headers(), trust_env=False,
                                     timeout=DEADLINE_S + 10) as client:
            await stream_frames(client, gateway.url, {"text": "Probe.", **SHORT})
        await asyncio.sleep(0.5)


async def streams_under_way(client: httpx.AsyncClient, url: str, n: int, timeout_s: float
                            ) -> tuple[list[asyncio.Task], dict[int, list[dict]]]:
    """`n` medium streams, returned once each is producing audio (its first `metrics` frame
    follows its first chunk); the tasks fill `results[i]` with each stream's frames."""
    results: dict[int, list[dict]] = {}
    under_way = {i: asyncio.Event() for i in range(n)}

    async def one(i: int) -> None:
        async def seen(frame: dict) -> None:
            if frame["type"] == "metrics":
                under_way[i].set()
        try:
            _status, results[i] = await stream_frames(
                client, url, {"text": MEDIUM_TEXT, "timeout_s": timeout_s, **MEDIUM}, seen)
        finally:
            under_way[i].set()

    tasks = [asyncio.create_task(one(i)) for i in range(n)]
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in under_way.values())), 120)
    return tasks, results


# --- SIGTERM: drain ---------------------------------------------------------------------------
async def test_sigterm_lets_streams_in_flight_finish_and_new_ones_go_elsewhere(local_stack):
    draining = local_stack.workers[1]
    draining_id = draining.name.removeprefix("worker-")
    try:
        async with httpx.AsyncClient(headers=local_stack.headers(), trust_env=False,
                                     timeout=DEADLINE_S + 30) as client:
            inflight, results = await streams_under_way(client, local_stack.url, 4,
                                                        DEADLINE_S + 20)
            os.kill(draining.proc.pid, signal.SIGTERM)  # the worker process only: it drains
            # The signal is asynchronous: new requests start once the worker says it drains.
            await wait_draining(client, draining.url)
            after: list[list[dict]] = []
            for k in range(3):
                _status, frames = await stream_frames(
                    client, local_stack.url, {"text": f"After the drain {k}.", **SHORT})
                after.append(frames)
            await asyncio.wait_for(asyncio.gather(*inflight), DEADLINE_S + 30)

        on_draining = [f for f in results.values() if worker_of(f) == draining_id]
        assert all(f[-1]["type"] == "eos" for f in results.values()), \
            [f[-1] for f in results.values()]
        print(f"{len(on_draining)} of 4 streams were on the draining worker")
        assert all(f[-1]["type"] == "eos" and worker_of(f) != draining_id for f in after), \
            [(worker_of(f), f[-1]) for f in after]
        draining.proc.wait(60)  # drained, then exited by itself
    finally:
        # Later suites share this worker pair: bring it back whatever happened above.
        local_stack.restart_worker(draining)


# --- SIGKILL mid-stream -----------------------------------------------------------------------
async def test_sigkill_mid_stream_ends_streams_explicitly_and_the_sdk_fails_over(local_stack):
    victim, survivor = local_stack.workers[0], local_stack.workers[1]
    victim_id = victim.name.removeprefix("worker-")
    try:
        async with httpx.AsyncClient(headers=local_stack.headers(), trust_env=False,
                                     timeout=DEADLINE_S + 30) as client:
            tasks, results = await streams_under_way(client, local_stack.url, 4, DEADLINE_S)
            victim.signal_group(signal.SIGKILL)
            await asyncio.wait_for(asyncio.gather(*tasks), DEADLINE_S + 30)  # no hang

        for frames in results.values():
            last = frames[-1]
            if worker_of(frames) == victim_id and last["type"] == "error":
                assert last["code"] == p.ErrorCode.UPSTREAM_LOST and last["retryable"], last
            else:
                assert last["type"] in ("eos", "error"), last

        # The SDK: the dead endpoint first, the live one second; it fails over before any
        # audio, then its breaker keeps the dead one out until it comes back.
        async with OrpheusTTS([victim.url, survivor.url], hedge_ttfb_ms=None,
                              failure_threshold=2, cooldown_s=3.0) as tts:
            attempts = []
            for _ in range(3):
                stream = tts.stream("Fail over, please.", **SHORT)
                pcm = b"".join([c async for c in stream])
                assert stream.info.eos is not None and len(pcm) > 0
                assert stream.info.endpoint == survivor.url
                attempts.append(stream.info.attempts)
            assert attempts[0] == [victim.url, survivor.url]  # failed over before any audio
            states = {e.url: e.breaker for e in tts.endpoints()}
            assert states[victim.url] in ("open", "half_open"), states  # opened, cooling down
            assert states[survivor.url] == "closed"

            victim = local_stack.restart_worker(victim)
            await asyncio.sleep(3.2)  # past the cooldown: the next pick probes it
            deadline = time.monotonic() + 30
            while {e.url: e.breaker for e in tts.endpoints()}[victim.url] != "closed":
                assert time.monotonic() < deadline, tts.endpoints()
                async for _ in tts.stream("Are you back?", **SHORT):
                    pass
    finally:
        if not victim.alive():
            local_stack.restart_worker(victim)
    load = local_stack.wait_idle(60)
    assert all(v == (0, 0) for v in load.values()), load
