"""The model names one model pool answers to: `model` in the OpenAI and Groq speech APIs, and
`GET /v1/models` (several pools: `pools.PoolRouter`).

A pool's name is its configured model (`--model-name`; say
`canopylabs/orpheus-arabic-saudi`, as Groq's clients ask for it), else whatever the workers
report in `/v1/system`. OpenAI's speech model names are accepted too, since voice-agent
frameworks send them by default (`gpt-4o-mini-tts`, `tts-1`, `tts-1-hd`), and so is `orpheus`.
Any other name is a 400 `model_not_found` that lists the served ones, so a request meant for
another model (an Arabic request at an English cluster) is refused, not served by the wrong one.
"""

from __future__ import annotations

from orpheus_tts.protocol import ErrorCode, RequestError

OPENAI_MODEL_NAMES = ("gpt-4o-mini-tts", "tts-1", "tts-1-hd", "orpheus")


class ModelNames:
    def __init__(self, model_name: str | None = None, created: int = 0):
        self.model_name = model_name
        self.created = created

    def served(self, worker_models: list[str]) -> list[str]:
        """The served model's names first, then the OpenAI names it also answers to."""
        own = [self.model_name] if self.model_name else sorted(set(worker_models))
        return list(dict.fromkeys([*own, *OPENAI_MODEL_NAMES]))

    def check(self, model: str, worker_models: list[str]) -> None:
        """Raise a 400 for a model this gateway does not serve. While neither a name is
        configured nor a worker has said what it serves, any name is let through."""
        if not self.model_name and not worker_models:
            return
        served = self.served(worker_models)
        if model not in served:
            raise RequestError(
                ErrorCode.UNKNOWN_MODEL,
                f"Model '{model}' is not served here. Served models: {', '.join(served)}.",
                param="model")

    def listing(self, worker_models: list[str]) -> dict:
        """OpenAI's `GET /v1/models` list."""
        return {"object": "list", "data": [
            {"id": name, "object": "model", "created": self.created, "owned_by": "orpheus-tts"}
            for name in self.served(worker_models)]}
