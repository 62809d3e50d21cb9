"""OpenAI voice names -> model voices, applied on every API.

Voice-agent frameworks only send OpenAI's names, so each maps to one of the served model's
voices. The built-in map targets Orpheus's English voices; `--voice-aliases FILE` replaces it.
"""

from __future__ import annotations

from orpheus_tts.protocol import ErrorCode, RequestError

OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage",
                 "shimmer", "verse", "marin", "cedar")

DEFAULT_ALIASES: dict[str, str] = {
    "alloy": "tara", "ash": "leo", "ballad": "dan", "coral": "jess", "echo": "zac",
    "fable": "leah", "nova": "mia", "onyx": "leo", "sage": "zoe", "shimmer": "jess",
    "verse": "dan", "marin": "tara", "cedar": "zac",
}


class VoiceMap:
    def __init__(self, aliases: dict[str, str] | None = None, default_voice: str | None = None):
        self.aliases = {k.lower(): v for k, v in (DEFAULT_ALIASES if aliases is None else aliases).items()}
        self.default_voice = default_voice

    def resolve(self, voice: str | None, known: list[str]) -> str | None:
        """The model voice to send upstream.

        `known` is what the workers report serving (empty while unknown: the worker then
        judges). An alias resolves through the map; anything else must be a known voice.
        """
        if voice is None or voice == "":
            voice = self.default_voice
            if voice is None:
                return None
        target = self.aliases.get(voice.lower(), voice)
        if known and target not in known:
            by_lower = {k.lower(): k for k in known}
            if target.lower() in by_lower:
                return by_lower[target.lower()]
            names = ", ".join(sorted(known))
            if target != voice:
                msg = (f"Voice '{voice}' is an alias for '{target}', which the workers do not "
                       f"serve. Available voices: {names}.")
            else:
                msg = f"Unknown voice '{voice}'. Available voices: {names}; aliases: " \
                      f"{', '.join(sorted(self.aliases))}."
            raise RequestError(ErrorCode.UNKNOWN_VOICE, msg, param="voice")
        return target

    def listing(self, known: list[str]) -> dict:
        return {
            "object": "list",
            "data": [{"id": v, "object": "voice"} for v in sorted(known)],
            "voices": sorted(known),
            "aliases": dict(sorted(self.aliases.items())),
            "default": self.default_voice,
        }
