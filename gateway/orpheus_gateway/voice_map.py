"""Other services' voice names -> model voices, applied on every API.

Voice-agent frameworks only send OpenAI's names, and Groq's clients send Groq's names for its
Orpheus models (English `autumn diana hannah austin daniel troy`; Arabic `abdullah fahad sultan
lulwa noura aisha`), so each maps to one of the served model's voices. The built-in table targets
Orpheus's English voices; `--voice-aliases FILE` (the cluster's `voiceAliases`) overrides its
entries and adds others. A voice the workers serve under the requested name is used as is,
so Groq's Arabic names need no entry on a cluster whose model serves them.
"""

from __future__ import annotations

from orpheus_tts.protocol import ErrorCode, RequestError, clip

OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage",
                 "shimmer", "verse", "marin", "cedar")

DEFAULT_ALIASES: dict[str, str] = {
    "alloy": "tara", "ash": "leo", "ballad": "dan", "coral": "jess", "echo": "zac",
    "fable": "leah", "nova": "mia", "onyx": "leo", "sage": "zoe", "shimmer": "jess",
    "verse": "dan", "marin": "tara", "cedar": "zac",
}
# Groq's voices for `canopylabs/orpheus-v1-english`, by voice gender.
GROQ_ENGLISH_ALIASES: dict[str, str] = {
    "autumn": "tara", "diana": "leah", "hannah": "jess",
    "austin": "leo", "daniel": "dan", "troy": "zac",
}
# Groq's Arabic voices that `canopylabs/orpheus-arabic-saudi` lacks (it has fahad, sultan,
# lulwa, noura), by voice gender; they resolve only where those voices are served.
GROQ_ARABIC_ALIASES: dict[str, str] = {"abdullah": "sultan", "aisha": "lulwa"}
BUILT_IN_ALIASES = {**DEFAULT_ALIASES, **GROQ_ENGLISH_ALIASES, **GROQ_ARABIC_ALIASES}


class VoiceMap:
    def __init__(self, aliases: dict[str, str] | None = None, default_voice: str | None = None):
        merged = {**BUILT_IN_ALIASES, **(aliases or {})}
        self.aliases = {k.lower(): v for k, v in merged.items()}
        self.default_voice = default_voice

    def resolve(self, voice: str | None, known: list[str]) -> str | None:
        """The model voice to send upstream.

        `known` is what the workers report serving (empty while unknown: the worker then
        judges). A served voice is used as is; an alias resolves through the map; anything
        else must be a known voice.
        """
        if voice is None or voice == "":
            voice = self.default_voice
            if voice is None:
                return None
        served = {k.lower(): k for k in known}
        if voice.lower() in served:
            return served[voice.lower()]
        target = self.aliases.get(voice.lower(), voice)
        if known and target not in known:
            if target.lower() in served:
                return served[target.lower()]
            names = ", ".join(sorted(known))
            if target != voice:
                msg = (f"Voice '{clip(voice)}' is an alias for '{clip(target)}', which the "
                       f"workers do not serve. Available voices: {names}.")
            else:
                msg = f"Unknown voice '{clip(voice)}'. Available voices: {names}; aliases: " \
                      f"{', '.join(sorted(self.aliases))}."
            raise RequestError(ErrorCode.UNKNOWN_VOICE, msg, param="voice")
        return target

    def serves(self, voice: str, known: list[str]) -> bool:
        """Whether `voice` names, or is an alias of, one of the `known` voices."""
        served = {k.lower() for k in known}
        return voice.lower() in served or self.aliases.get(voice.lower(), "").lower() in served

    def listing(self, known: list[str]) -> dict:
        return {
            "object": "list",
            "data": [{"id": v, "object": "voice"} for v in sorted(known)],
            "voices": sorted(known),
            "aliases": dict(sorted(self.aliases.items())),
            "default": self.default_voice,
        }
