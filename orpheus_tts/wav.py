"""WAV (RIFF, PCM s16le) helpers for the 24 kHz mono audio of the v1 contract.

`wav_header(None)` is the header for a stream of unknown length (RIFF and data sizes
0xFFFFFFFF, which players read as "until the end"), for servers that send WAV as it is made.
`WavWriter` writes a file as chunks arrive and fixes the sizes when closed.
"""

from __future__ import annotations

import os
import struct
from types import TracebackType
from typing import BinaryIO

from orpheus_tts.protocol import CHANNELS, SAMPLE_RATE, SAMPLE_WIDTH

HEADER_SIZE = 44
UNKNOWN_SIZE = 0xFFFFFFFF


def wav_header(
    data_bytes: int | None,
    sample_rate: int = SAMPLE_RATE,
    channels: int = CHANNELS,
    sample_width: int = SAMPLE_WIDTH,
) -> bytes:
    """The 44-byte header for `data_bytes` of PCM; `None` for a stream of unknown length."""
    if data_bytes is None:
        riff_size = data_size = UNKNOWN_SIZE
    else:
        if data_bytes < 0 or data_bytes > UNKNOWN_SIZE - 36:
            raise ValueError(f"data size {data_bytes} does not fit a WAV header")
        riff_size, data_size = 36 + data_bytes, data_bytes
    block_align = channels * sample_width
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", riff_size, b"WAVE",
        b"fmt ", 16, 1, channels, sample_rate, sample_rate * block_align, block_align,
        sample_width * 8,
        b"data", data_size,
    )


STREAMING_WAV_HEADER = wav_header(None)


def pcm_to_wav(pcm: bytes, sample_rate: int = SAMPLE_RATE) -> bytes:
    """A complete WAV file holding `pcm` (s16le mono)."""
    return wav_header(len(pcm), sample_rate) + pcm


class WavWriter:
    """Write PCM to a WAV file as it arrives; the header's sizes are fixed on `close()`.

    `with WavWriter("out.wav") as w: w.write(chunk)`. A file left by a crash keeps the
    streaming header (sizes 0xFFFFFFFF), which players still read.
    """

    def __init__(self, path: str | os.PathLike[str], sample_rate: int = SAMPLE_RATE):
        self.path = path
        self.sample_rate = sample_rate
        self.data_bytes = 0
        self._file: BinaryIO | None = open(path, "wb")  # noqa: SIM115 (closed in close())
        self._file.write(wav_header(None, sample_rate))

    def write(self, pcm: bytes) -> None:
        if self._file is None:
            raise ValueError("write to a closed WavWriter")
        self._file.write(pcm)
        self._file.flush()  # readers of a growing file see audio as it arrives
        self.data_bytes += len(pcm)

    def close(self) -> None:
        """Fix the header sizes and close the file. Idempotent."""
        f, self._file = self._file, None
        if f is None:
            return
        try:
            f.seek(0)
            f.write(wav_header(self.data_bytes, self.sample_rate))
        finally:
            f.close()

    @property
    def seconds(self) -> float:
        return self.data_bytes / (self.sample_rate * SAMPLE_WIDTH * CHANNELS)

    def __enter__(self) -> WavWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def write_wav(path: str | os.PathLike[str], pcm: bytes, sample_rate: int = SAMPLE_RATE) -> None:
    with open(path, "wb") as f:
        f.write(pcm_to_wav(pcm, sample_rate))
