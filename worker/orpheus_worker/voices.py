"""Per-model voice sets: `voices/<name>.json` (or any JSON file path) with names and aliases.

A voice set file: `{"name": ..., "voices": [...], "aliases": {"alloy": "tara", ...}}`.
Aliases (OpenAI's voice names) are optional; the gateway maps them too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from orpheus_tts.protocol import ErrorCode, RequestError


@dataclass(frozen=True)
class VoiceSet:
    name: str
    voices: tuple[str, ...]
    aliases: dict[str, str] = field(default_factory=dict)

    def resolve(self, voice: str | None) -> str | None:
        """The voice to put in the prompt; None means no voice prefix. Unknown -> 400."""
        if voice is None:
            return None
        key = voice.strip().lower()
        if key in self.voices:
            return key
        if key in self.aliases:
            return self.aliases[key]
        raise RequestError(
            ErrorCode.UNKNOWN_VOICE,
            f"Unknown voice '{voice}'. Valid voices: {', '.join(self.voices)}.",
            param="voice",
        )


def builtin_sets() -> list[str]:
    folder = resources.files("orpheus_worker") / "voices"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def load_voice_set(spec: str) -> VoiceSet:
    """`spec`: a built-in set name (`english`, `arabic`), a JSON file, or `a,b,c` names."""
    if spec in builtin_sets():
        data = json.loads((resources.files("orpheus_worker") / "voices" / f"{spec}.json")
                          .read_text(encoding="utf-8"))
    elif spec.endswith(".json") and Path(spec).is_file():
        data = json.loads(Path(spec).read_text(encoding="utf-8"))
    elif "," in spec or spec.isidentifier():
        names = [v.strip().lower() for v in spec.split(",") if v.strip()]
        data = {"name": "custom", "voices": names}
    else:
        raise ValueError(f"unknown voice set {spec!r}; built-in: {', '.join(builtin_sets())}")
    voices = tuple(v.lower() for v in data["voices"])
    aliases = {k.lower(): v.lower() for k, v in data.get("aliases", {}).items() if v in voices}
    return VoiceSet(name=data.get("name", spec), voices=voices, aliases=aliases)
