"""Split long text into bounded segments at sentence boundaries.

Orpheus degrades on very long prompts and its audio budget grows with the text, so long text
is generated as several requests, in order, streamed as one utterance. Sentences are packed
greedily into segments of at most `max_chars`; a sentence longer than that is split at the last
clause boundary (`,;:`) or space before the limit, and only as a last resort mid-word. Emotion
tags such as `<laugh>` are never split.
"""

from __future__ import annotations

import re

DEFAULT_SEGMENT_CHARS = 300

# End of a sentence: . ! ? … and their CJK / Arabic forms, with closing quotes or brackets.
_SENTENCE_END = re.compile(r"(?<=[.!?…。！？؟])[\"'”’)\]]*\s+")
_SOFT_BREAKS = ",;:،、，"


def sentences(text: str) -> list[str]:
    parts = [p.strip() for p in _SENTENCE_END.split(text.strip())]
    return [p for p in parts if p]


def _split_long(sentence: str, max_chars: int) -> list[str]:
    out: list[str] = []
    rest = sentence
    while len(rest) > max_chars:
        window = rest[: max_chars + 1]
        cut = max(window.rfind(c) for c in _SOFT_BREAKS)
        if cut <= 0:
            cut = window.rfind(" ")
        if cut <= 0:
            cut = max_chars
        else:
            cut += 1
        # never cut inside an emotion tag
        tag_open = rest.rfind("<", 0, cut)
        if tag_open > rest.rfind(">", 0, cut) and tag_open > 0:
            cut = tag_open
        out.append(rest[:cut].strip())
        rest = rest[cut:].strip()
    if rest:
        out.append(rest)
    return [p for p in out if p]


def segment(text: str, max_chars: int = DEFAULT_SEGMENT_CHARS) -> list[str]:
    """Bounded segments covering `text`'s sentences in order."""
    if max_chars < 1:
        raise ValueError("max_chars must be positive")
    pieces: list[str] = []
    for sentence in sentences(text):
        pieces.extend(_split_long(sentence, max_chars) if len(sentence) > max_chars else [sentence])
    segments: list[str] = []
    for piece in pieces:
        if segments and len(segments[-1]) + 1 + len(piece) <= max_chars:
            segments[-1] = f"{segments[-1]} {piece}"
        else:
            segments.append(piece)
    return segments
