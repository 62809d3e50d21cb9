"""PCM (s16le mono, 24 kHz or the rate a client asked for) to the speech formats, chunk by chunk.

Each encoder takes PCM as it arrives and returns whatever encoded bytes are ready, so audio
streams out as it is generated: WAV is a header (sizes 0xFFFFFFFF: unknown, streaming) then
the PCM; MP3 comes from lameenc; Opus (in Ogg), FLAC and AAC (ADTS) from PyAV.

Groq's two extra formats, also from PyAV:
- `ogg` is Opus in Ogg, like `opus`. Not Vorbis: PyAV's FFmpeg has libopus but no libvorbis
  (only FFmpeg's experimental native Vorbis encoder), and Opus is the better speech codec at
  low latency. Opus encodes at 8, 12, 16, 24 or 48 kHz; another requested rate is encoded at
  48 kHz, the rate Ogg Opus decoders play at anyway (RFC 7845, section 5.1).
- `mulaw` is raw G.711 mu-law, one byte a sample at the requested rate (`audio/basic`), the
  telephony format (Twilio media streams and the like take it as is).
"""

from __future__ import annotations

import io
import struct
from typing import Protocol

from orpheus_tts.protocol import CHANNELS, SAMPLE_RATE, SAMPLE_WIDTH

CONTENT_TYPES = {
    "pcm": "audio/pcm",
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "flac": "audio/flac",
    "aac": "audio/aac",
    "ogg": "audio/ogg",
    "mulaw": "audio/basic",
}
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
FORMATS = tuple(CONTENT_TYPES)
UNKNOWN_SIZE = 0xFFFFFFFF


class Encoder(Protocol):
    def encode(self, pcm: bytes) -> bytes: ...

    def finish(self) -> bytes: ...

    def close(self) -> None:
        """Release what the encoder holds (after `finish`, or instead of it). Idempotent."""


class PcmEncoder:
    def close(self) -> None:
        return None

    def encode(self, pcm: bytes) -> bytes:
        return pcm

    def finish(self) -> bytes:
        return b""


def encoder_rate(fmt: str, sample_rate: int) -> int:
    """The rate the encoder runs at for PCM that arrives at `sample_rate`."""
    if fmt in ("opus", "ogg") and sample_rate not in OPUS_RATES:
        return 48000
    return sample_rate


def wav_header(sample_rate: int = SAMPLE_RATE, channels: int = CHANNELS,
               sample_width: int = SAMPLE_WIDTH) -> bytes:
    """A 44-byte RIFF/WAVE header for a stream of unknown length (both sizes 0xFFFFFFFF)."""
    byte_rate = sample_rate * channels * sample_width
    return (b"RIFF" + struct.pack("<I", UNKNOWN_SIZE) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, byte_rate,
                                    channels * sample_width, sample_width * 8)
            + b"data" + struct.pack("<I", UNKNOWN_SIZE))


class WavEncoder:
    def __init__(self, sample_rate: int = SAMPLE_RATE) -> None:
        self._header_sent = False
        self._rate = sample_rate

    def close(self) -> None:
        return None

    def encode(self, pcm: bytes) -> bytes:
        if self._header_sent:
            return pcm
        self._header_sent = True
        return wav_header(self._rate) + pcm

    def finish(self) -> bytes:
        return b"" if self._header_sent else self.encode(b"")


class Mp3Encoder:
    def __init__(self, bitrate_kbps: int = 64, sample_rate: int = SAMPLE_RATE) -> None:
        import lameenc

        self._enc = lameenc.Encoder()
        self._enc.set_bit_rate(bitrate_kbps)
        self._enc.set_in_sample_rate(sample_rate)
        self._enc.set_channels(CHANNELS)
        self._enc.set_quality(5)

    def encode(self, pcm: bytes) -> bytes:
        return bytes(self._enc.encode(pcm)) if pcm else b""

    def finish(self) -> bytes:
        return bytes(self._enc.flush())

    def close(self) -> None:
        return None


class _Sink(io.RawIOBase):
    """A non-seekable file the muxer writes into; `take()` empties it."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, b) -> int:  # type: ignore[override]
        self._parts.append(bytes(b))
        return len(b)

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


class AvEncoder:
    """A PyAV container+codec written to a pipe-like sink, flushed after every chunk."""

    # format -> (muxer, codec, muxer options)
    SPECS = {
        "opus": ("ogg", "libopus", {"page_duration": "20000", "flush_packets": "1"}),
        "flac": ("flac", "flac", {"flush_packets": "1"}),
        "aac": ("adts", "aac", {"flush_packets": "1"}),
        "ogg": ("ogg", "libopus", {"page_duration": "20000", "flush_packets": "1"}),
        "mulaw": ("mulaw", "pcm_mulaw", {"flush_packets": "1"}),
    }

    def __init__(self, fmt: str, sample_rate: int = SAMPLE_RATE) -> None:
        import av

        self._av = av
        muxer, codec, options = self.SPECS[fmt]
        self._in_rate = sample_rate
        self._rate = encoder_rate(fmt, sample_rate)
        self._resample = None
        if self._rate != sample_rate:
            from .audio import Resample

            self._resample = Resample(self._rate, in_rate=sample_rate)
        self._sink = _Sink()
        self._container = av.open(self._sink, mode="w", format=muxer, options=options)
        self._stream = self._container.add_stream(codec, rate=self._rate, layout="mono")
        self._pts = 0
        self._closed = False

    def encode(self, pcm: bytes) -> bytes:
        if self._resample is not None:
            pcm = self._resample.process(pcm)
        return self._encode(pcm)

    def _encode(self, pcm: bytes) -> bytes:
        n = len(pcm) // SAMPLE_WIDTH
        if n <= 0:
            return b""
        frame = self._av.AudioFrame(format="s16", layout="mono", samples=n)
        frame.planes[0].update(pcm[: n * SAMPLE_WIDTH])
        frame.sample_rate = self._rate
        frame.pts = self._pts
        self._pts += n
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        return self._sink.take()

    def finish(self) -> bytes:
        if self._closed:
            return b""
        head = self._encode(self._resample.flush()) if self._resample is not None else b""
        self._closed = True
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        return head + self._sink.take()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self._container.close()
            except Exception:  # noqa: BLE001 - abandoning a half-written stream
                pass


def make_encoder(fmt: str, sample_rate: int = SAMPLE_RATE) -> Encoder:
    """An encoder for PCM arriving at `sample_rate` (the output's rate but for `encoder_rate`)."""
    if fmt == "pcm":
        return PcmEncoder()
    if fmt == "wav":
        return WavEncoder(sample_rate)
    if fmt == "mp3":
        return Mp3Encoder(sample_rate=sample_rate)
    if fmt in AvEncoder.SPECS:
        return AvEncoder(fmt, sample_rate)
    raise ValueError(f"no encoder for {fmt!r}")
