"""Orpheus's token layout and the streaming parser that turns generated ids into SNAC frames.

Layout (Orpheus 3B, vocabulary of 156,940 ids):

- 0..127999 Llama-3 text tokens, 128000..128255 Llama-3 specials (128009 is `<|eot_id|>`);
- 128256 + n is `<custom_token_n>`: 128257 start of speech, 128258 end of speech (the stop
  token), 128259 start of human, 128260 end of human, 128261 start of AI;
- 128266 + 4096 * slot + code is the audio token for position `slot` (0..6) of a 7-token frame,
  code 0..4095. A frame spreads over SNAC's three codebooks: slot 0 -> layer 0; slots 1 and 4
  -> layer 1; slots 2, 3, 5 and 6 -> layer 2.

Parsing decisions (see docs/worker.md):

- code 0 is a valid code (Canopy's reference decoder drops it);
- the position within a frame is the count of audio tokens accepted so far, modulo 7, and nothing
  else moves it, so it never drifts;
- an audio token whose slot is not the expected one is *misplaced*: its code is taken for the
  expected position and it is counted (`misplaced`), so one wrong token cannot shift every later
  frame;
- any other id inside the audio stream (text or special token) is *stray*: counted and skipped
  without advancing the position;
- the stop token ends the stream; a trailing partial frame (fewer than 7 tokens) is counted as
  `incomplete_tokens` and not decoded, since SNAC needs all seven codes of a frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

VOCAB_SIZE = 156_940
BASE_VOCAB = 128_256  # the Llama-3 range: 128,000 text tokens + 256 specials
BEGIN_OF_TEXT = 128_000
END_OF_TEXT = 128_009  # <|eot_id|>
CUSTOM_TOKEN_BASE = 128_256  # <custom_token_0>
START_OF_SPEECH = 128_257
END_OF_SPEECH = 128_258
START_OF_HUMAN = 128_259
END_OF_HUMAN = 128_260
START_OF_AI = 128_261
AUDIO_BASE = 128_266
CODEBOOK_SIZE = 4_096
FRAME_TOKENS = 7
AUDIO_END = AUDIO_BASE + FRAME_TOKENS * CODEBOOK_SIZE  # exclusive
SAMPLES_PER_FRAME = 2_048  # 24 kHz SNAC: hop 512 x the coarsest codebook's stride 4

# slot -> (SNAC layer, index of the code within that layer's share of one frame)
SLOT_LAYOUT: tuple[tuple[int, int], ...] = (
    (0, 0), (1, 0), (2, 0), (2, 1), (1, 1), (2, 2), (2, 3)
)


def audio_token(slot: int, code: int) -> int:
    """The token id for `code` at position `slot` of a frame."""
    if not 0 <= slot < FRAME_TOKENS or not 0 <= code < CODEBOOK_SIZE:
        raise ValueError(f"slot {slot} / code {code} out of range")
    return AUDIO_BASE + CODEBOOK_SIZE * slot + code


def frame_tokens(codes: Iterable[int]) -> list[int]:
    """The seven token ids of one frame given its seven codes in slot order."""
    return [audio_token(slot, code) for slot, code in enumerate(codes)]


def audio_token_ids() -> list[int]:
    """Every audio token id (all slots), for constraining a random model's output."""
    return list(range(AUDIO_BASE, AUDIO_END))


def build_prompt(text_ids: list[int]) -> list[int]:
    """Wrap the tokenized `"{voice}: {text}"` into Orpheus's prompt."""
    return [START_OF_HUMAN, *text_ids, END_OF_TEXT, END_OF_HUMAN, START_OF_AI, START_OF_SPEECH]


def frames_to_snac_codes(frames: np.ndarray) -> list[np.ndarray]:
    """(n, 7) codes in slot order -> SNAC's three layers of shapes (n,), (2n,), (4n,)."""
    frames = np.asarray(frames, dtype=np.int64).reshape(-1, FRAME_TOKENS)
    layer0 = frames[:, 0]
    layer1 = frames[:, [1, 4]].reshape(-1)
    layer2 = frames[:, [2, 3, 5, 6]].reshape(-1)
    return [layer0, layer1, layer2]


@dataclass
class ParseStats:
    audio_tokens: int = 0
    misplaced: int = 0
    stray: int = 0
    incomplete_tokens: int = 0
    stopped: bool = False


@dataclass
class FrameParser:
    """Incremental parser: feed generated ids, collect complete frames of 7 codes."""

    stats: ParseStats = field(default_factory=ParseStats)
    _pending: list[int] = field(default_factory=list)

    @property
    def position(self) -> int:
        """The slot the next audio token fills."""
        return len(self._pending)

    def feed(self, token_ids: Iterable[int]) -> list[list[int]]:
        """Consume ids; return the frames completed by them (each 7 codes in slot order)."""
        frames: list[list[int]] = []
        for tid in token_ids:
            if self.stats.stopped:
                break
            if tid == END_OF_SPEECH:
                self.stats.stopped = True
                break
            if not AUDIO_BASE <= tid < AUDIO_END:
                self.stats.stray += 1
                continue
            slot, code = divmod(tid - AUDIO_BASE, CODEBOOK_SIZE)
            if slot != self.position:
                self.stats.misplaced += 1
            self.stats.audio_tokens += 1
            self._pending.append(code)
            if len(self._pending) == FRAME_TOKENS:
                frames.append(self._pending)
                self._pending = []
        return frames

    def finish(self) -> None:
        """End of generation: account for a trailing partial frame."""
        self.stats.incomplete_tokens = len(self._pending)
        self._pending = []
