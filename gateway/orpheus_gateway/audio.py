"""Streaming PCM transforms between the workers' audio and what a client asked for.

Workers send s16le mono PCM at `SAMPLE_RATE` (24 kHz). Two transforms follow, each fed chunk
by chunk and flushed once at the end, so audio keeps streaming:

- `TimeStretch`: OpenAI's `speed` (0.25-4.0) as a pitch-preserving tempo change, by FFmpeg's
  `atempo` filter through PyAV (already the gateway's encoder library). One `atempo` keeps
  quality within 0.5-2.0 (above 2 it drops samples instead of blending), so a factor outside
  that range runs as a chain: 0.25 = 0.5 x 0.5, 4.0 = 2 x 2.
- `Resample`: Groq's `sample_rate` (8000-48000) and Canopy's 48 kHz, by libsoxr's streaming
  resampler (`soxr.ResampleStream`, "HQ").

`PcmPipeline` chains them (stretch at 24 kHz, then resample) and is what the APIs use.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from orpheus_tts.protocol import SAMPLE_RATE

MIN_SPEED, MAX_SPEED = 0.25, 4.0
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8000, 48000


def atempo_factors(speed: float) -> list[float]:
    """`speed` as a product of factors each within atempo's blending range 0.5-2.0."""
    if not MIN_SPEED <= speed <= MAX_SPEED:
        raise ValueError(f"speed must be within {MIN_SPEED}-{MAX_SPEED}, got {speed}")
    factors: list[float] = []
    rest = speed
    while rest > 2.0:
        factors.append(2.0)
        rest /= 2.0
    while rest < 0.5:
        factors.append(0.5)
        rest /= 0.5
    factors.append(rest)
    return factors


class _WholeSamples:
    """Bytes cut at sample boundaries: an odd trailing byte waits for the next piece."""

    def __init__(self) -> None:
        self._carry = b""

    def take(self, pcm: bytes) -> bytes:
        pcm = self._carry + pcm
        cut = len(pcm) // 2 * 2
        pcm, self._carry = pcm[:cut], pcm[cut:]
        return pcm


class TimeStretch:
    """Tempo change without pitch change, streaming (s16le mono in, s16le mono out)."""

    def __init__(self, speed: float, sample_rate: int = SAMPLE_RATE) -> None:
        import av

        self._av = av
        self._rate = sample_rate
        self._graph = av.filter.Graph()
        src = self._graph.add_abuffer(format="s16", sample_rate=sample_rate, layout="mono",
                                      time_base=Fraction(1, sample_rate))
        node = src
        for factor in atempo_factors(speed):
            nxt = self._graph.add("atempo", f"{factor:.6f}")
            node.link_to(nxt)
            node = nxt
        fmt = self._graph.add("aformat", "sample_fmts=s16:channel_layouts=mono")
        node.link_to(fmt)
        sink = self._graph.add("abuffersink")
        fmt.link_to(sink)
        self._graph.configure()
        self._pts = 0
        self._done = False
        self._whole = _WholeSamples()

    def _drain(self) -> bytes:
        out = []
        while True:
            try:
                frame = self._graph.pull()
            except (self._av.error.BlockingIOError, self._av.error.EOFError, EOFError):
                break
            out.append(frame.to_ndarray().tobytes())
        return b"".join(out)

    def process(self, pcm: bytes) -> bytes:
        if self._done:
            return b""
        pcm = self._whole.take(pcm)
        n = len(pcm) // 2
        if n == 0:
            return b""
        frame = self._av.AudioFrame(format="s16", layout="mono", samples=n)
        frame.planes[0].update(pcm)
        frame.sample_rate = self._rate
        frame.time_base = Fraction(1, self._rate)
        frame.pts = self._pts
        self._pts += n
        self._graph.push(frame)
        return self._drain()

    def flush(self) -> bytes:
        if self._done:
            return b""
        self._done = True
        self._graph.push(None)
        return self._drain()


class Resample:
    """libsoxr's streaming resampler, s16le mono bytes in and out."""

    def __init__(self, out_rate: int, in_rate: int = SAMPLE_RATE) -> None:
        import soxr

        self._stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality="HQ")
        self._done = False
        self._whole = _WholeSamples()

    def process(self, pcm: bytes) -> bytes:
        if self._done:
            return b""
        pcm = self._whole.take(pcm)
        if not pcm:
            return b""
        x = np.frombuffer(pcm, dtype="<i2")
        return self._stream.resample_chunk(x).astype("<i2").tobytes()

    def flush(self) -> bytes:
        if self._done:
            return b""
        self._done = True
        tail = self._stream.resample_chunk(np.zeros(0, dtype="<i2"), last=True)
        return tail.astype("<i2").tobytes()


class PcmPipeline:
    """Speed then sample rate; with neither asked for, PCM passes through untouched."""

    def __init__(self, speed: float = 1.0, sample_rate: int = SAMPLE_RATE) -> None:
        if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
            raise ValueError(f"sample_rate must be within {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE}")
        self.sample_rate = sample_rate
        self._stages: list[TimeStretch | Resample] = []
        if speed != 1.0:
            self._stages.append(TimeStretch(speed))
        if sample_rate != SAMPLE_RATE:
            self._stages.append(Resample(sample_rate))

    def process(self, pcm: bytes) -> bytes:
        if not self._stages:
            return pcm
        for stage in self._stages:
            pcm = stage.process(pcm)
        return pcm

    def flush(self) -> bytes:
        out = b""
        for i, stage in enumerate(self._stages):
            tail = stage.flush()
            for later in self._stages[i + 1:]:
                tail = later.process(tail)
            out += tail
        return out
