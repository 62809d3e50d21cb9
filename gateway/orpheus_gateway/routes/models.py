"""`GET /v1/models` (and Groq's `/openai/v1/models`): the model names `model` may take."""

from __future__ import annotations

from fastapi import APIRouter, Request

from orpheus_tts import protocol as p

from .common import gateway_of

router = APIRouter()


@router.get(p.MODELS_PATH, summary="Served model names (OpenAI's model list)")
@router.get("/openai" + p.MODELS_PATH, include_in_schema=False)
async def models(request: Request) -> dict:
    gw = gateway_of(request)
    return gw.pools.models_listing(gw.created)
