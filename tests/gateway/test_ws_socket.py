"""`SessionSocket`, the one owner of a session's socket: what every WebSocket session (ours,
Canopy's, vLLM-Omni's) relies on for one terminal per utterance and a quiet end."""

import asyncio
from dataclasses import dataclass

from starlette.websockets import WebSocketDisconnect

from orpheus_gateway import ws_socket
from orpheus_gateway.ws_socket import SessionSocket
from orpheus_tts import protocol as p


class FakeSocket:
    def __init__(self, fail_after: int | None = None):
        self.sent: list[str | bytes] = []
        self.closed: list[tuple[int, str]] = []
        self.fail_after = fail_after

    async def _put(self, message: str | bytes) -> None:
        if self.fail_after is not None and len(self.sent) >= self.fail_after:
            raise WebSocketDisconnect(1006)
        self.sent.append(message)

    async def send_text(self, text: str) -> None:
        await self._put(text)

    async def send_bytes(self, data: bytes) -> None:
        await self._put(data)

    async def close(self, code: int, reason: str) -> None:
        self.closed.append((code, reason))


@dataclass
class Utt:
    finished: bool = False


async def test_one_terminal_per_utterance_and_no_audio_after_it():
    ws = FakeSocket()
    sock = SessionSocket(ws)  # type: ignore[arg-type]
    utt = Utt()
    assert await sock.send_for(utt, b"pcm-1")
    assert await sock.finish(utt, p.WsDone(utterance_id="u"))
    assert not await sock.finish(utt, p.WsCancelled(utterance_id="u"))
    assert not await sock.send_for(utt, b"pcm-2")
    assert ws.sent == [b"pcm-1", p.WsDone(utterance_id="u").model_dump_json()]


async def test_a_gone_socket_makes_later_sends_no_ops_and_close_happens_once():
    ws = FakeSocket(fail_after=1)
    sock = SessionSocket(ws)  # type: ignore[arg-type]
    assert await sock.send("first")
    assert not await sock.send(b"second")  # the client went away: no error raised
    assert not sock.open
    assert not await sock.send("third")
    await sock.close(p.WS_CLOSE_IDLE, "idle timeout")
    assert ws.sent == ["first"] and ws.closed == []  # nothing to close

    ws = FakeSocket()
    sock = SessionSocket(ws)  # type: ignore[arg-type]
    await sock.close(1000, "closed")
    await sock.close(p.WS_CLOSE_IDLE, "idle timeout")
    assert ws.closed == [(1000, "closed")]
    assert not await sock.send("late")
    assert ws.sent == []


class StuckSocket(FakeSocket):
    """A client that stopped reading: a send never completes."""

    async def _put(self, message: str | bytes) -> None:
        await asyncio.Event().wait()


async def test_a_client_that_stops_reading_counts_as_gone(monkeypatch):
    monkeypatch.setattr(ws_socket, "SEND_TIMEOUT_S", 0.05)
    sock = SessionSocket(StuckSocket())  # type: ignore[arg-type]
    utt = Utt()
    async with asyncio.timeout(5):  # without the bound this would wait forever
        assert not await sock.send_for(utt, b"pcm")  # the speaker stops: its stream closes
    assert not sock.open
    assert await sock.finish(utt, p.WsDone(utterance_id="u"))  # recorded, nothing blocks
    assert not await sock.send("later")
