"""LiveKit Agents' OpenAI plugin `TTS`, as an agent uses it, pointed at the gateway.

Usage: livekit_tts.py BASE_URL API_KEY OPTIONS_JSON. Synthesizes one sentence and prints JSON:
{"audio_frames", "sample_rates", "samples", "error"}.
"""

import asyncio
import json
import sys

from livekit.agents import APIConnectOptions
from livekit.plugins import openai


async def main() -> None:
    base_url, api_key, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    result = {"audio_frames": 0, "sample_rates": [], "samples": 0, "error": None}
    tts = openai.TTS(base_url=base_url, api_key=api_key, **options)
    try:
        async with tts.synthesize("Hello from a LiveKit agent.",
                                  conn_options=APIConnectOptions(max_retry=0)) as stream:
            async for audio in stream:
                result["audio_frames"] += 1
                result["samples"] += audio.frame.samples_per_channel
                result["sample_rates"] = sorted(set(result["sample_rates"])
                                                | {audio.frame.sample_rate})
    except Exception as exc:  # what the agent would see
        result["error"] = f"{type(exc).__name__}: {exc}"[:500]
    finally:
        await tts.aclose()
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
