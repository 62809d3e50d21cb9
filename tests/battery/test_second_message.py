"""The post-mortem's first symptom: "the second message is silent". Message two after message one,
on one SDK client and on one WebSocket (the browser is in tests/browser)."""

from __future__ import annotations

import pytest

from orpheus_tts.sdk import OrpheusTTS
from tests.battery.support import QUICK, WsClient

pytestmark = [pytest.mark.engine, pytest.mark.timeout(900)]  # incl. starting the engines


async def test_second_message_on_one_sdk_client(local_stack):
    async with OrpheusTTS([local_stack.url], api_key=local_stack.api_key) as tts:
        for text in ("First message.", "Second message."):
            stream = tts.stream(text, **QUICK)
            pcm = b"".join([c async for c in stream])
            assert stream.info.eos is not None
            assert len(pcm) == stream.info.eos.samples * 2 > 0


async def test_second_message_on_one_websocket(local_stack):
    async with WsClient(local_stack.url, local_stack.api_key) as ws:
        for uid, text in (("one", "First message."), ("two", "Second message.")):
            await ws.speak(uid, text, QUICK)
            terminal = await ws.wait_terminal(uid, 120)
            assert terminal["type"] == "done", terminal
            assert sum(map(len, ws.utterances[uid].audio)) == terminal["stats"]["samples"] * 2 > 0
