# SDK guide §5.2 "Streaming over HTTP (server -> client)", verbatim but for the URL and the key
# (see guide_quickstart.py). Run: uvicorn --app-dir examples guide_fastapi_stream:app
import os

from orpheus_tts.up import local_api_key

ORPHEUS_URL = os.environ.get("ORPHEUS_URL", "http://127.0.0.1:8000")
ORPHEUS_API_KEY = local_api_key()
# --- the guide's code ---------------------------------------------------------------------------
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from orpheus_tts.sdk import OrpheusTTS

app = FastAPI()
tts = OrpheusTTS([ORPHEUS_URL], api_key=ORPHEUS_API_KEY)

@app.get("/speak")
async def speak(q: str):
    async def gen():
        async for chunk in tts.stream(text=q, temperature=0.4):
            yield chunk
    return StreamingResponse(gen(), media_type="application/octet-stream")

@app.on_event("shutdown")
async def _shutdown():
    await tts.close()
