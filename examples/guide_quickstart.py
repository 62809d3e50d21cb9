# SDK guide §2.1 "Minimal streaming example (save to WAV)", verbatim but for the URL and the key:
# they come from ORPHEUS_URL / ORPHEUS_API_KEY, defaulting to the local stack `orpheus-tts up`
# starts and the key it saved.
import os

from orpheus_tts.up import local_api_key

ORPHEUS_URL = os.environ.get("ORPHEUS_URL", "http://127.0.0.1:8000")
ORPHEUS_API_KEY = local_api_key()
# --- the guide's code ---------------------------------------------------------------------------
import asyncio, wave
from orpheus_tts.sdk import OrpheusTTS

SAMPLE_RATE = 24000
SAMPLE_WIDTH = 2 # bytes
CHANNELS = 1
async def main():
    tts = OrpheusTTS(
        base_urls=[ORPHEUS_URL], # one or many gateway/worker URLs
        api_key=ORPHEUS_API_KEY, # or None if not required
        hedge_ttfb_ms=400 # set None to disable hedging
    )
    pcm_chunks = []
    async for chunk in tts.stream(
        text="Hello world from Orpheus.",
        voice="alloy", # optional; service-defined
        temperature=0.4, top_p=0.9, top_k=0, # optional tuning passed through
        max_tokens=1536
    ):
        pcm_chunks.append(chunk)
    with wave.open("hello.wav", "wb") as wf:
        wf.setnchannels(CHANNELS)
        wf.setsampwidth(SAMPLE_WIDTH)
        wf.setframerate(SAMPLE_RATE)
        wf.writeframes(b"".join(pcm_chunks))
    await tts.close() # IMPORTANT: release HTTP connections
asyncio.run(main())
