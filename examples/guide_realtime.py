# SDK guide §2.2 "Realtime playback", verbatim but for the URL and the key (see guide_quickstart.py).
# Needs `pip install sounddevice numpy` and a sound card.
import os

from orpheus_tts.up import local_api_key

ORPHEUS_URL = os.environ.get("ORPHEUS_URL", "http://127.0.0.1:8000")
ORPHEUS_API_KEY = local_api_key()
# --- the guide's code ---------------------------------------------------------------------------
# pip install sounddevice numpy
import asyncio, numpy as np, sounddevice as sd

from orpheus_tts.sdk import OrpheusTTS

SAMPLE_RATE = 24000

async def speak(text):
    tts = OrpheusTTS([ORPHEUS_URL], api_key=ORPHEUS_API_KEY)
    async for chunk in tts.stream(text=text, temperature=0.4):
        sd.play(np.frombuffer(chunk, dtype=np.int16), SAMPLE_RATE, blocking=False)
        # (Optional) sd.wait() at end if you want to block until done
    await tts.close()

asyncio.run(speak("Streaming playback demo."))
