"""Streamed text through the gateway to real worker processes on the stand-in model: a cancel
in the middle of an utterance aborts every engine request it has running."""

from __future__ import annotations

import asyncio
import json
import re

import httpx
import pytest
from websockets.asyncio.client import connect

from orpheus_tts import protocol as p
from tests.gateway.conftest import auth
from tests.gateway.test_real_workers import real_gw, wait_workers_idle  # noqa: F401 - a fixture
from tests.gateway.test_ws import Session

pytestmark = pytest.mark.engine


def inflight_metric(url: str) -> float:
    text = httpx.get(url + "/metrics", timeout=10).text
    return float(re.search(r"^orpheus_worker_streams_inflight (\S+)$", text, re.M).group(1))


async def test_cancel_mid_utterance_brings_every_worker_back_to_idle(real_gw, worker_pair):  # noqa: F811
    urls = [w.url for w in worker_pair]
    async with connect(real_gw.ws_url + p.WS_PATH, additional_headers=auth(),
                       open_timeout=10) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        s = Session(ws)
        await ws.send(json.dumps({"type": "open", "utterance_id": "t",
                                  "params": {"max_tokens": 1400}}))
        await ws.send(json.dumps({"type": "append", "utterance_id": "t", "text":
                                  "The first sentence is spoken now. The second one is already "
                                  "being generated. A third waits its turn. "}))
        await s.pump(lambda: len(s.audio["t"]) >= 1, timeout=240)
        for _ in range(100):  # the next segment starts once the head has its first audio
            busy = [await asyncio.to_thread(inflight_metric, u) for u in urls]
            if sum(busy) == 2:
                break
            await asyncio.sleep(0.1)
        assert sum(busy) == 2  # the head segment and the next one, on the two workers
        await ws.send(json.dumps({"type": "cancel", "utterance_id": "t"}))
        await s.pump(lambda: bool(s.terminals["t"]), timeout=30)
    assert [m["type"] for m in s.terminals["t"]] == ["cancelled"] and not s.violations
    snaps = await wait_workers_idle(urls, timeout=60)
    assert all(x["inflight"] == 0 and not x.get("engine_requests") for x in snaps.values()), snaps
    assert [await asyncio.to_thread(inflight_metric, u) for u in urls] == [0.0, 0.0]
