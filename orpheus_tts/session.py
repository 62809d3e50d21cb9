"""`Session`: one WebSocket to a gateway, several utterances on it, text streamed in as written.

    async with tts.session(voice="tara") as s:
        utt = await s.open()                      # an utterance fed text in pieces
        for token in llm_tokens:
            await utt.send(token)
        await utt.end()
        async for pcm in utt:                     # PCM s16le 24 kHz mono, as `stream()`
            ...
        await s.interrupt()                       # cancel whatever is queued or speaking

Ownership (the three laws): the session owns the socket and the one task that reads it; each
`Utterance` owns the audio the reader hands it. `aclose()` is idempotent and ends every open
utterance. Completion is explicit: iterating an utterance ends only at its `done` (or
`cancelled`) message; an `error` raises `StreamError`, and a socket that closes before the
terminal raises `IncompleteStreamError`. Requires the `websockets` package (a base dependency),
imported only when a session is opened.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from orpheus_tts import protocol as p
from orpheus_tts.errors import IncompleteStreamError, StreamError

__all__ = ["Session", "Utterance", "session_headers"]

_AUDIO_QUEUE = 1024  # chunks buffered per utterance before the socket reader waits


def session_headers(api_key: str | None) -> dict[str, str]:
    headers = {"User-Agent": "orpheus-tts-sdk/0.1"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def ws_url(base_url: str) -> str:
    if base_url.startswith("https://"):
        return "wss://" + base_url[len("https://"):] + p.WS_PATH
    if base_url.startswith("http://"):
        return "ws://" + base_url[len("http://"):] + p.WS_PATH
    return base_url + p.WS_PATH


class Utterance:
    """One utterance of a session. Iterate it for its audio; `send`/`flush`/`end` feed text
    (for one opened with `Session.open`); `cancel()` ends it at once."""

    def __init__(self, session: Session, utterance_id: str):
        self.session = session
        self.id = utterance_id
        self.outcome: str | None = None  # "done", "cancelled", "error", "lost"
        self.stats: dict[str, Any] = {}
        self.segments: list[str] = []  # the server's cuts, as it reported them
        self._chunks: deque[bytes] = deque()  # filled by the reader, bounded by _AUDIO_QUEUE
        self._changed = asyncio.Event()  # a chunk arrived, or the utterance is over
        self._space = asyncio.Event()  # the consumer took a chunk
        self._over = False  # nothing more will be yielded (terminal, or cancelled by us)
        self._error: BaseException | None = None
        self._terminal = asyncio.Event()

    @property
    def finished(self) -> bool:
        """The server's terminal message (or the socket's end) has arrived."""
        return self._terminal.is_set()

    async def send(self, text: str) -> None:
        for i in range(0, len(text), p.WS_MAX_APPEND_CHARS):
            await self.session._send({"type": "append", "utterance_id": self.id,
                                      "text": text[i:i + p.WS_MAX_APPEND_CHARS]})

    async def flush(self) -> None:
        await self.session._send({"type": "flush", "utterance_id": self.id})

    async def end(self) -> None:
        await self.session._send({"type": "end", "utterance_id": self.id})

    async def cancel(self) -> None:
        """Stop this utterance; audio not yet taken is dropped. Idempotent."""
        if self._over:
            return
        self._stop()
        await self.session._send({"type": "cancel", "utterance_id": self.id}, quiet=True)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._audio()

    async def _audio(self) -> AsyncIterator[bytes]:
        while True:
            if self._chunks:
                pcm = self._chunks.popleft()
                self._space.set()
                yield pcm
                continue
            if self._over:
                if self._error is not None:
                    raise self._error
                return
            self._changed.clear()
            await self._changed.wait()

    async def wait(self) -> str | None:
        """Until the server's terminal message for this utterance (or the socket's end)."""
        await self._terminal.wait()
        return self.outcome

    # --- fed by the session's reader ---------------------------------------------------------
    def _stop(self) -> None:
        """Yield nothing more (a cancel or interrupt of ours)."""
        self._over = True
        self._chunks.clear()
        self._changed.set()
        self._space.set()

    async def _audio_in(self, pcm: bytes) -> None:
        while len(self._chunks) >= _AUDIO_QUEUE and not self._over:
            self._space.clear()
            await self._space.wait()
        if not self._over:
            self._chunks.append(pcm)
            self._changed.set()

    def _end(self, outcome: str, error: BaseException | None = None) -> None:
        if self.finished:
            return
        self.outcome = outcome
        self._terminal.set()
        if not self._over:
            self._error = error
            self._over = True
            self._changed.set()
            self._space.set()



class Session:
    """A WebSocket session with the gateway (`OrpheusTTS.session()` makes one)."""

    def __init__(self, base_url: str, headers: dict[str, str], *, voice: str | None = None,
                 open_timeout_s: float = 10.0, on_close: Any = None, **params: Any):
        self.url = ws_url(base_url)
        self._headers = {k: v for k, v in headers.items() if k.lower() != "accept"}
        self.voice = voice
        self.params = params
        self.open_timeout_s = open_timeout_s
        self._on_close = on_close
        self._ws: Any = None
        self._reader: asyncio.Task | None = None
        self._utterances: dict[str, Utterance] = {}
        self._ids = itertools.count()
        self._prefix = uuid.uuid4().hex[:8]
        self._closed = False

    @property
    def closed(self) -> bool:
        """Closed by `aclose()`, or its socket has gone (the server closed an idle session):
        no utterance can be opened on it any more."""
        return self._closed or (self._reader is not None and self._reader.done())

    async def __aenter__(self) -> Session:
        try:
            await self.connect()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def connect(self) -> None:
        from websockets.asyncio.client import connect

        if self._closed:
            raise RuntimeError("the session is closed")
        if self._ws is not None:
            return
        self._ws = await connect(self.url, additional_headers=self._headers,
                                 open_timeout=self.open_timeout_s, max_size=2 ** 22)
        try:
            first = json.loads(await asyncio.wait_for(self._ws.recv(), self.open_timeout_s))
            if first.get("type") != "ready":
                raise IncompleteStreamError(f"session did not start: {first}",
                                            endpoint=self.url)
        except BaseException:
            await self._ws.close()
            raise
        self._reader = asyncio.create_task(self._read(), name="orpheus-session-reader")

    async def aclose(self) -> None:
        """Close the socket and end every open utterance. Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        # Utterances still open end now, as incomplete, whatever the server says after this.
        self._lose_all("the session was closed before the utterance ended")
        if self._ws is not None:
            try:
                await self._send({"type": "close"}, quiet=True)
            finally:
                await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._on_close is not None:
            self._on_close()

    # --- utterances --------------------------------------------------------------------------
    def _new_id(self) -> str:
        return f"{self._prefix}-{next(self._ids)}"

    def _body(self, voice: str | None, params: dict[str, Any]) -> dict[str, Any]:
        merged = {**self.params, **params}
        out: dict[str, Any] = {}
        if voice or self.voice:
            out["voice"] = voice or self.voice
        if merged:
            out["params"] = merged
        return out

    async def open(self, voice: str | None = None, *, interrupt: bool = False,
                   **params: Any) -> Utterance:
        """An utterance fed with `send()` and finished with `end()`."""
        utt = self._register()
        await self._send({"type": "open", "utterance_id": utt.id, "interrupt": interrupt,
                          **self._body(voice, params)})
        return utt

    async def speak(self, text: str, voice: str | None = None, *, interrupt: bool = False,
                    **params: Any) -> Utterance:
        """A whole text as one utterance (the one-shot `speak` message)."""
        utt = self._register()
        await self._send({"type": "speak", "utterance_id": utt.id, "text": text,
                          "interrupt": interrupt, **self._body(voice, params)})
        return utt

    async def interrupt(self) -> None:
        """Cancel every queued and speaking utterance; their remaining audio is dropped."""
        for utt in list(self._utterances.values()):
            utt._stop()
        await self._send({"type": "interrupt"}, quiet=True)

    async def stream_text(self, text: AsyncIterable[str], voice: str | None = None,
                          **params: Any) -> AsyncIterator[bytes]:
        """Speak text as it is produced; yields PCM as it arrives."""
        utt = await self.open(voice, **params)
        failed: list[BaseException] = []  # the text source's error, once it has failed
        feeder = asyncio.create_task(self._feed(utt, text, failed), name="orpheus-text-feeder")
        try:
            async for pcm in utt:
                yield pcm
            if failed:
                await feeder  # the text source's own error
            # Otherwise the server ended the utterance (or it ended after the text did): a
            # source still writing, or stalled, is not waited for.
            if utt.outcome == "cancelled":
                raise StreamError(p.ErrorCode.CANCELLED, "the utterance was cancelled",
                                  endpoint=self.url)
        finally:
            if not feeder.done():
                feeder.cancel()
            await asyncio.gather(feeder, return_exceptions=True)
            if not utt.finished:
                await utt.cancel()

    @staticmethod
    async def _feed(utt: Utterance, text: AsyncIterable[str],
                    failed: list[BaseException]) -> None:
        try:
            async for piece in text:
                if piece:
                    await utt.send(piece)
            await utt.end()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            failed.append(exc)  # before the cancel ends the consumer's loop
            await utt.cancel()
            raise

    def _register(self) -> Utterance:
        if self._closed or self._ws is None:
            raise RuntimeError("the session is not open")
        utt = Utterance(self, self._new_id())
        self._utterances[utt.id] = utt
        return utt

    # --- the socket --------------------------------------------------------------------------
    async def _send(self, message: dict[str, Any], quiet: bool = False) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            await self._ws.send(json.dumps(message))
        except ConnectionClosed:
            if not quiet:
                raise IncompleteStreamError("the session's socket is closed",
                                            endpoint=self.url) from None

    async def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for message in self._ws:
                if isinstance(message, bytes):
                    uid, _seq, pcm = p.decode_ws_audio(message)
                    utt = self._utterances.get(uid)
                    if utt is not None:
                        await utt._audio_in(pcm)
                    continue
                self._dispatch(json.loads(message))
        except ConnectionClosed:
            pass
        finally:
            self._lose_all("the session's socket closed before the utterance ended")

    def _dispatch(self, msg: dict[str, Any]) -> None:
        kind, uid = msg.get("type"), msg.get("utterance_id")
        utt = self._utterances.get(uid) if isinstance(uid, str) else None
        if kind == "segment" and utt is not None:
            utt.segments.append(msg.get("text", ""))
        if kind not in p.WS_TERMINAL_TYPES or utt is None:
            return  # session-level errors answer a malformed message of ours
        del self._utterances[uid]
        if kind == "done":
            utt.stats = msg.get("stats") or {}
            utt._end("done")
        elif kind == "cancelled":
            utt._end("cancelled")
        else:
            utt._end("error", StreamError(msg.get("code", p.ErrorCode.INTERNAL),
                                          msg.get("message", ""), bool(msg.get("retryable")),
                                          endpoint=self.url))

    def _lose_all(self, why: str) -> None:
        for utt in list(self._utterances.values()):
            utt._end("lost", IncompleteStreamError(why, endpoint=self.url))
        self._utterances.clear()
