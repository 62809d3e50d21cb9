"""`POST /openai/v1/audio/speech`: where Groq's client sends a speech request
(`{base_url}/openai/v1/audio/speech`), served by the OpenAI speech route (which takes Groq's
`sample_rate` and its `ogg` and `mulaw` formats)."""

from __future__ import annotations

from fastapi import APIRouter

from orpheus_tts import protocol as p

from .speech import SPEECH_RESPONSES, speech
from .common import schema_body
from ..openai_speech import SpeechRequest

router = APIRouter()
router.add_api_route(p.GROQ_SPEECH_PATH, speech, methods=["POST"],
                     summary="Groq-compatible speech (same as /v1/audio/speech)",
                     openapi_extra=schema_body(SpeechRequest), responses=SPEECH_RESPONSES)
