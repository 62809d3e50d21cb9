# SDK guide §15 "Example: Full App Skeleton (FastAPI)", verbatim: it already reads its URL and key
# from ORPHEUS_URLS / ORPHEUS_KEY. Run: uvicorn --app-dir examples guide_fastapi_app:app
from fastapi import FastAPI, HTTPException
from fastapi.responses import StreamingResponse
from orpheus_tts.sdk import OrpheusTTS
import os, asyncio
API_KEY = os.getenv("ORPHEUS_KEY", "")
BASE_URLS = os.getenv("ORPHEUS_URLS", "https://tts.example.com").split(",")
app = FastAPI()
tts = OrpheusTTS(BASE_URLS, api_key=API_KEY, hedge_ttfb_ms=400)
@app.get("/v1/tts.wav")
async def tts_wav(q: str):
    import wave, io
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wf:
        wf.setnchannels(1); wf.setsampwidth(2); wf.setframerate(24000)
        async for chunk in tts.stream(text=q, temperature=0.4):
            wf.writeframes(chunk)
    buf.seek(0)
    return StreamingResponse(buf, media_type="audio/wav")
@app.on_event("shutdown")
async def _shutdown():
    await tts.close()
