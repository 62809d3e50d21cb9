# SDK guide §5.1 "Concurrency (multiple synths at once)", verbatim but for the URL and the key
# (see guide_quickstart.py).
import os

from orpheus_tts.up import local_api_key

ORPHEUS_URL = os.environ.get("ORPHEUS_URL", "http://127.0.0.1:8000")
ORPHEUS_API_KEY = local_api_key()
# --- the guide's code ---------------------------------------------------------------------------
import asyncio
from orpheus_tts.sdk import OrpheusTTS

texts = ["One", "Two", "Three", "Four"]

async def one(tts, text, idx):
    chunks = []
    async for c in tts.stream(text=text, temperature=0.3):
        chunks.append(c)
    return idx, b"".join(chunks)

async def main():
    tts = OrpheusTTS([ORPHEUS_URL], api_key=ORPHEUS_API_KEY)
    results = await asyncio.gather(*(one(tts, t, i) for i, t in enumerate(texts)))
    await tts.close()
    # results = list[(idx, pcm_bytes)]
asyncio.run(main())
