"""Streaming SNAC decoding: a sliding window per stream and one decode loop for all streams.

SNAC's decoder is convolutional: an output sample depends on codes up to ~4,600 samples
(2.25 frames) either side of it. A stream that has `n` frames so far can therefore emit the
samples up to `n * 2048 - right_context` exactly enough (the rest waits for more frames), and a
decode only needs `left_context` samples of history before the first sample it emits. At end of
stream everything up to `n * 2048` is emitted (the flush), so the concatenated stream has exactly
the length of a one-shot decode of the whole code sequence.

Each decode covers *all* the frames that became ready since the last one, so a stream that is
behind costs one decoder call for several frames. The `DecodeLoop` gathers the ready windows of
every active stream and decodes them together: windows are made equal in length by giving the
shorter ones more left context from their own history (more real context never changes the
result), and those that cannot be extended that far go in a batch of their own. The loop never
waits to fill a batch, so a lone stream gets no added latency.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .tokens import FRAME_TOKENS, SAMPLES_PER_FRAME, frames_to_snac_codes

log = logging.getLogger(__name__)

# Measured on SNAC 24 kHz (docs/worker.md): error of a truncated decode vs distance from the cut.
# 3,584 samples of right context keeps every emitted sample within about -53 dB of the one-shot
# decode and lets the first 512 samples out after two frames; 4,608 of left context is exact.
DEFAULT_RIGHT_CONTEXT = 3_584
DEFAULT_LEFT_CONTEXT = 4_608


def load_snac(name_or_dir: str, *, device: str = "cpu", disable_noise: bool = False) -> Any:
    """Load SNAC from a directory or a hub id (the same code path for real and stand-in)."""
    from snac import SNAC

    model = SNAC.from_pretrained(str(name_or_dir)).eval().to(device)
    if disable_noise:
        strip_noise(model)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def strip_noise(model: Any) -> Any:
    """Replace SNAC's NoiseBlocks with identities, making decoding deterministic."""
    import torch
    from snac.layers import NoiseBlock

    for name, child in list(model.named_children()):
        if isinstance(child, NoiseBlock):
            setattr(model, name, torch.nn.Identity())
        else:
            strip_noise(child)
    return model


SNAC_MODES = ("eager", "compile", "cudagraphs")
SNAC_DTYPES = ("float32", "bfloat16")


def batch_bucket(n: int) -> int:
    """The power of two a batch of `n` windows is padded to for a compiled or graphed decoder,
    so the shapes it sees (and the graphs it keeps) stay few."""
    return 1 << max(0, n - 1).bit_length()


def effective_mode(mode: str, device: str) -> str:
    """`cudagraphs` where the device is CUDA, else eager (with `--snac-device auto` the device
    is known only at start)."""
    if mode == "cudagraphs" and not str(device).startswith("cuda"):
        log.warning("SNAC mode cudagraphs needs CUDA; decoding eagerly on %s", device)
        return "eager"
    return mode


class SnacDecoder:
    """Decodes batches of equal-length frame windows to float PCM in [-1, 1].

    `mode`: `eager` (the default), `compile` (`torch.compile` of SNAC's decode), or `cudagraphs`
    (one captured CUDA graph per batch bucket and window length, CUDA only). `dtype`: `float32`
    or `bfloat16` weights and activations. `make bench-gpu` measures each (docs/benchmarks.md).
    A compiled or graphed decoder that fails on first use logs why and falls back to eager.
    """

    def __init__(self, model: Any, device: str = "cpu", *, mode: str = "eager",
                 dtype: str = "float32", max_graphs: int = 32,
                 compile_backend: str = "inductor"):
        import torch

        if mode not in SNAC_MODES:
            raise ValueError(f"SNAC mode must be one of {SNAC_MODES}, not {mode!r}")
        if dtype not in SNAC_DTYPES:
            raise ValueError(f"SNAC dtype must be one of {SNAC_DTYPES}, not {dtype!r}")
        if mode == "cudagraphs" and not str(device).startswith("cuda"):
            raise ValueError("SNAC mode 'cudagraphs' needs a CUDA device")
        if dtype != "float32":
            model = model.to(getattr(torch, dtype))
        self.model = model
        self.device = device
        self.mode = mode
        self.dtype = dtype
        self.calls = 0
        self.max_graphs = max_graphs
        self._lock = threading.Lock()
        self._compiled = (torch.compile(model.decode, backend=compile_backend)
                          if mode == "compile" else None)
        # (captured graph, its static inputs, its output) by input shapes, least recent first
        self._graphs: OrderedDict[tuple[int, ...], tuple[Any, list[Any], Any]] = OrderedDict()
        self._pool = None

    def decode(self, batch: list[np.ndarray]) -> np.ndarray:
        """`batch`: B arrays of shape (n, 7), same n. Returns (B, n * 2048) float32."""
        import torch

        n = batch[0].shape[0]
        if any(w.shape[0] != n for w in batch):
            raise ValueError("windows in one SNAC batch must have the same length")
        rows = len(batch)
        if self.mode != "eager":
            pad = batch_bucket(rows) - rows
            batch = list(batch) + [np.zeros_like(batch[0])] * pad
        layers = [frames_to_snac_codes(w) for w in batch]
        codes = [
            torch.from_numpy(np.stack([lay[i] for lay in layers])).to(self.device)
            for i in range(3)
        ]
        with self._lock, torch.inference_mode():
            self.calls += 1
            audio = self._forward(codes)
            return audio[:rows, 0, :].float().cpu().numpy()

    def _forward(self, codes: list[Any]) -> Any:
        if self.mode == "eager":
            return self.model.decode(codes)
        try:
            if self.mode == "compile":
                return self._compiled(codes)
            return self._replay(codes)
        except Exception:  # noqa: BLE001 - a backend failure must not take the stream down
            log.exception("SNAC %s decoder failed; falling back to eager", self.mode)
            self.mode, self._compiled = "eager", None
            self._graphs.clear()
            return self.model.decode(codes)

    def _replay(self, codes: list[Any]) -> Any:
        """Run SNAC's decode through a CUDA graph captured for these shapes."""
        import torch

        key = tuple(d for c in codes for d in c.shape)
        entry = self._graphs.get(key)
        if entry is None:
            static = [c.clone() for c in codes]
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):  # warm up kernels and the allocator before capture
                    self.model.decode(static)
            torch.cuda.current_stream().wait_stream(side)
            if self._pool is None:
                self._pool = torch.cuda.graph_pool_handle()
            graph = torch.cuda.CUDAGraph()
            # thread_local: other threads of this process may use CUDA while this one captures
            with torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
                out = self.model.decode(static)
            entry = (graph, static, out)
            self._graphs[key] = entry
            while len(self._graphs) > self.max_graphs:
                self._graphs.popitem(last=False)
        else:
            self._graphs.move_to_end(key)
        graph, static, out = entry
        for dst, src in zip(static, codes):
            dst.copy_(src)
        graph.replay()
        return out  # read (copied to the host) before the next replay, under the lock

    def decode_one(self, frames: np.ndarray) -> np.ndarray:
        """One-shot decode of a whole code sequence (n, 7) -> (n * 2048,)."""
        return self.decode([np.asarray(frames).reshape(-1, FRAME_TOKENS)])[0]


def to_pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


@dataclass(frozen=True)
class Window:
    """Decode frames [start, stop) and emit samples [emit_from, emit_to) (stream positions)."""

    start: int
    stop: int
    emit_from: int
    emit_to: int

    @property
    def frames(self) -> int:
        return self.stop - self.start


@dataclass
class StreamingDecoder:
    """One stream's sliding window. Plain logic: the decode loop and tests drive it."""

    right_context: int = DEFAULT_RIGHT_CONTEXT
    left_context: int = DEFAULT_LEFT_CONTEXT
    frames: list[list[int]] = field(default_factory=list)
    emitted: int = 0  # samples already handed out
    finished: bool = False
    decodes: int = 0

    def push(self, frames: list[list[int]]) -> None:
        if self.finished:
            raise RuntimeError("push after finish")
        self.frames.extend(frames)

    def finish(self) -> None:
        self.finished = True

    @property
    def total_samples(self) -> int:
        return len(self.frames) * SAMPLES_PER_FRAME

    @property
    def done(self) -> bool:
        return self.finished and self.emitted >= self.total_samples

    def emit_limit(self) -> int:
        """Stream position up to which samples have complete context now."""
        if self.finished:
            return self.total_samples
        return max(0, self.total_samples - self.right_context)

    def plan(self, frames: int | None = None) -> Window | None:
        """The next window to decode, or None when nothing new can be emitted.

        `frames`: make the window this many frames long by extending its left context, when
        the stream's history allows (for batching with longer windows).
        """
        emit_to = self.emit_limit()
        if emit_to <= self.emitted:
            return None
        stop = len(self.frames)
        start = max(0, (self.emitted - self.left_context) // SAMPLES_PER_FRAME)
        if frames is not None and stop - frames >= 0 and stop - frames < start:
            start = stop - frames
        return Window(start, stop, self.emitted, emit_to)

    def accept(self, window: Window, audio: np.ndarray) -> np.ndarray:
        """Take the decoded window's audio; return the newly emitted samples."""
        if window.emit_from != self.emitted:
            raise RuntimeError("window does not continue the stream")
        base = window.start * SAMPLES_PER_FRAME
        out = audio[window.emit_from - base: window.emit_to - base]
        self.emitted = window.emit_to
        self.decodes += 1
        return out

    def window_codes(self, window: Window) -> np.ndarray:
        return np.asarray(self.frames[window.start: window.stop], dtype=np.int64)


def plan_batches(streams: list[StreamingDecoder]) -> list[list[tuple[StreamingDecoder, Window]]]:
    """Group the ready windows of `streams` into equal-length batches (fewest groups first)."""
    planned = [(s, w) for s in streams if (w := s.plan()) is not None]
    if not planned:
        return []
    longest = max(w.frames for _, w in planned)
    groups: dict[int, list[tuple[StreamingDecoder, Window]]] = {}
    for stream, _ in planned:
        window = stream.plan(frames=longest)
        assert window is not None
        groups.setdefault(window.frames, []).append((stream, window))
    return [groups[k] for k in sorted(groups, reverse=True)]


class DecodeStream:
    """A stream registered with the `DecodeLoop`: push frames in, read PCM chunks out."""

    def __init__(self, loop: DecodeLoop, decoder: StreamingDecoder):
        self._loop = loop
        self.decoder = decoder
        self.chunks: asyncio.Queue[bytes | None | BaseException] = asyncio.Queue()
        self.closed = False

    def push(self, frames: list[list[int]]) -> None:
        if frames and not self.closed:
            self.decoder.push(frames)
            self._loop.wake()

    def finish(self) -> None:
        if not self.closed and not self.decoder.finished:
            self.decoder.finish()
            self._loop.wake()

    def fail(self, exc: BaseException) -> None:
        """Make the reader's next `next_chunk()` raise `exc`."""
        self.chunks.put_nowait(exc)

    def close(self) -> None:
        """Drop pending decode work. Idempotent."""
        if not self.closed:
            self.closed = True
            self._loop.discard(self)

    async def next_chunk(self) -> bytes | None:
        """The next PCM chunk (s16le); None once the stream has been flushed."""
        item = await self.chunks.get()
        if isinstance(item, BaseException):
            raise item
        return item


class DecodeLoop:
    """One task decoding the ready windows of every active stream in shared SNAC calls."""

    def __init__(self, decoder: SnacDecoder, *, right_context: int = DEFAULT_RIGHT_CONTEXT,
                 left_context: int = DEFAULT_LEFT_CONTEXT, max_batch: int = 32,
                 on_batch: Callable[[int], None] | None = None):
        self.decoder = decoder
        self.right_context = right_context
        self.left_context = left_context
        self.max_batch = max_batch
        self.on_batch = on_batch
        self._streams: list[DecodeStream] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def open(self) -> DecodeStream:
        stream = DecodeStream(self, StreamingDecoder(self.right_context, self.left_context))
        self._streams.append(stream)
        return stream

    def discard(self, stream: DecodeStream) -> None:
        if stream in self._streams:
            self._streams.remove(stream)

    @property
    def active(self) -> int:
        return len(self._streams)

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="snac-decode")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for stream in list(self._streams):
            stream.fail(RuntimeError("decoder stopped"))
            stream.close()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while await self._step():
                pass

    async def _step(self) -> bool:
        """Decode one round of ready windows; False when nothing was ready."""
        streams = [s for s in self._streams if not s.closed]
        for s in streams:
            if s.decoder.done:
                s.chunks.put_nowait(None)
                s.close()
        batches = plan_batches([s.decoder for s in streams if not s.closed])
        if not batches:
            return False
        owner = {id(s.decoder): s for s in streams}
        for group in batches:
            for i in range(0, len(group), self.max_batch):
                part = group[i: i + self.max_batch]
                codes = [d.window_codes(w) for d, w in part]
                try:
                    audio = await asyncio.to_thread(self.decoder.decode, codes)
                except Exception as exc:  # noqa: BLE001 - handed to every stream in the batch
                    log.exception("SNAC decode failed")
                    for d, _ in part:
                        stream = owner[id(d)]
                        stream.fail(exc)
                        stream.close()
                    continue
                if self.on_batch is not None:
                    self.on_batch(len(part))
                for row, (d, w) in enumerate(part):
                    stream = owner[id(d)]
                    if stream.closed:  # cancelled while decoding: drop the work
                        continue
                    stream.chunks.put_nowait(to_pcm16(d.accept(w, audio[row])))
        return True
