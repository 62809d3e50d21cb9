"""OpenAI's `instructions` ("Speak in a cheerful tone", "sound tired") for a model that has none.

Orpheus takes no style prompt; it takes emotion tags inside the text (`<laugh>`, `<sigh>`, ...).
So the words of `instructions` that name one of those sounds, or a mood one of them conveys,
become that tag at the start of the input; anything else is ignored. Either way the response
says what happened in `X-Orpheus-Instructions` (`applied: <tag> ...` or `ignored`), so a
caller can tell that its instructions did or did not change the audio.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HEADER = "X-Orpheus-Instructions"
MAX_TAGS = 2

# Orpheus's tag -> words in an instruction that ask for it (matched as whole words, any case).
TAG_WORDS: dict[str, tuple[str, ...]] = {
    "<laugh>": ("laugh", "laughing", "laughs", "amused", "hilarious", "funny"),
    "<chuckle>": ("chuckle", "chuckling", "cheerful", "playful", "happy", "joyful", "warm"),
    "<sigh>": ("sigh", "sighing", "sad", "tired", "weary", "disappointed", "resigned"),
    "<gasp>": ("gasp", "gasping", "surprised", "shocked", "astonished", "amazed"),
    "<groan>": ("groan", "groaning", "annoyed", "frustrated", "exasperated", "grumpy"),
    "<yawn>": ("yawn", "yawning", "sleepy", "drowsy", "bored"),
    "<sniffle>": ("sniffle", "sniffling", "crying", "tearful", "sobbing"),
    "<cough>": ("cough", "coughing"),
}
_WORD_TO_TAG = {w: tag for tag, words in TAG_WORDS.items() for w in words}
_WORDS = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class Applied:
    text: str  # the input to speak, with the tags in front
    tags: tuple[str, ...]

    @property
    def header(self) -> str:
        return "applied: " + " ".join(self.tags) if self.tags else "ignored"


def apply_instructions(text: str, instructions: str | None) -> Applied:
    """The input with the tags `instructions` asks for (in the order asked, at most
    `MAX_TAGS`, none the text already starts with)."""
    tags: list[str] = []
    for word in _WORDS.findall((instructions or "").lower()):
        tag = _WORD_TO_TAG.get(word)
        if tag and tag not in tags and len(tags) < MAX_TAGS:
            tags.append(tag)
    if not tags:
        return Applied(text, ())
    return Applied("".join(tags) + " " + text, tuple(tags))
