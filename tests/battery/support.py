"""What the battery shares: a WebSocket session client, resource snapshots, small params.

`WsClient` speaks `WS /v1/tts/ws` (message shapes from `orpheus_tts.protocol`) on one socket
and keeps, per utterance, its audio and its terminal message with arrival times, so tests can
check completion and acknowledgement latency. `Resources` snapshots the test process (asyncio
tasks, file descriptors, TCP connections) and the stack's processes (RSS), for leak checks.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field

import psutil
import websockets
from websockets.asyncio.client import ClientConnection

from orpheus_tts import protocol as p

# Short generations: the stand-in engine runs on 2 shared CPU cores.
QUICK = {"max_tokens": 28}  # 4 SNAC frames: the least that makes audio
LONG_TEXT = ("Once upon a time, in a small village by the sea, there lived an old fisherman and "
             "his wife. Every day he went out to sea and every evening he came back home.")
LONG = {"max_tokens": 1200}


@dataclass
class UtteranceLog:
    id: str
    sent_at: float
    audio: list[bytes] = field(default_factory=list)
    first_audio_at: float | None = None
    terminal: dict | None = None
    terminal_at: float | None = None
    audio_after_terminal: int = 0
    started: bool = False


class WsClient:
    """One WebSocket session; a reader task files every message under its utterance."""

    def __init__(self, url: str, api_key: str | None):
        self.url = url.replace("http://", "ws://") + p.WS_PATH
        self.api_key = api_key
        self.ws: ClientConnection | None = None
        self.utterances: dict[str, UtteranceLog] = {}
        self.unattributed: list[dict] = []
        self._reader: asyncio.Task | None = None
        self._changed = asyncio.Event()
        self.closed_code: int | None = None

    async def __aenter__(self) -> "WsClient":
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self.ws = await websockets.connect(self.url, additional_headers=headers,
                                           max_size=None, open_timeout=30)
        ready = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
        assert ready["type"] == "ready", ready
        self._reader = asyncio.create_task(self._read(), name="battery-ws-reader")
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        """Idempotent: say `close`, close the socket, end the reader."""
        if self.ws is not None:
            try:
                await self.ws.send(json.dumps({"type": "close"}))
            except websockets.ConnectionClosed:
                pass
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for raw in self.ws:
                now = time.monotonic()
                if isinstance(raw, bytes):
                    uid, _seq, pcm = p.decode_ws_audio(raw)
                    u = self.utterances[uid]
                    if u.terminal is not None:
                        u.audio_after_terminal += 1
                    if u.first_audio_at is None:
                        u.first_audio_at = now
                    u.audio.append(pcm)
                else:
                    msg = json.loads(raw)
                    u = self.utterances.get(msg.get("utterance_id") or "")
                    if u is None:
                        self.unattributed.append(msg)
                    elif msg["type"] == "started":
                        u.started = True
                    elif msg["type"] in p.WS_TERMINAL_TYPES:
                        assert u.terminal is None, f"second terminal for {u.id}: {msg}"
                        u.terminal, u.terminal_at = msg, now
                self._changed.set()
        except websockets.ConnectionClosed as exc:
            self.closed_code = exc.rcvd.code if exc.rcvd else None
        finally:
            self._changed.set()

    async def speak(self, uid: str, text: str, params: dict | None = None,
                    interrupt: bool = False) -> UtteranceLog:
        assert self.ws is not None
        log = self.utterances[uid] = UtteranceLog(uid, time.monotonic())
        await self.ws.send(json.dumps({"type": "speak", "utterance_id": uid, "text": text,
                                       "params": params or {}, "interrupt": interrupt}))
        return log

    async def cancel(self, uid: str) -> float:
        assert self.ws is not None
        sent = time.monotonic()
        await self.ws.send(json.dumps({"type": "cancel", "utterance_id": uid}))
        return sent

    async def wait(self, predicate, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("condition not met in time")
            self._changed.clear()
            if predicate():
                return
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def wait_terminal(self, uid: str, timeout_s: float) -> dict:
        await self.wait(lambda: self.utterances[uid].terminal is not None, timeout_s)
        return self.utterances[uid].terminal  # type: ignore[return-value]


# --- resources -------------------------------------------------------------------------------
def tcp_connections_to(port: int, pid: int | None = None) -> int:
    """ESTABLISHED (or closing) TCP connections of `pid` (default: this process) to `port`."""
    proc = psutil.Process(pid or os.getpid())
    return sum(1 for c in proc.net_connections(kind="tcp")
               if c.raddr and c.raddr.port == port and c.status != psutil.CONN_TIME_WAIT)


def accepted_connections(pid: int, port: int) -> int:
    """Connections a server process `pid` holds on its listening `port` (not TIME_WAIT)."""
    proc = psutil.Process(pid)
    return sum(1 for c in proc.net_connections(kind="tcp")
               if c.laddr and c.laddr.port == port and c.raddr
               and c.status not in (psutil.CONN_TIME_WAIT, psutil.CONN_LISTEN))


def tree_rss(pid: int) -> int:
    """Resident memory of a process and its children, bytes."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


@dataclass
class Resources:
    tasks: int
    fds: int
    rss: dict[str, int]

    @classmethod
    def take(cls, stack) -> "Resources":
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        return cls(tasks=len(tasks), fds=psutil.Process().num_fds(),
                   rss={c.name: tree_rss(c.proc.pid) for c in [*stack.children, *stack.workers]})


async def settle(check, timeout_s: float = 10.0, interval_s: float = 0.1):
    """Poll `check()` (sync) until it is truthy or the time is up; returns its last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(interval_s)
