"""Stream from several endpoints with hedging, a deadline and typed errors; write a WAV.

    ORPHEUS_URLS=http://127.0.0.1:8000 ORPHEUS_API_KEY=KEY python examples/sdk_cluster.py
"""

from __future__ import annotations

import asyncio
import os

import httpx

from orpheus_tts.errors import CircuitOpenError, StreamError
from orpheus_tts.sdk import OrpheusTTS
from orpheus_tts.wav import WavWriter

URLS = os.environ.get("ORPHEUS_URLS", "http://127.0.0.1:8000").split(",")
OUT = os.environ.get("ORPHEUS_OUT", "sdk_cluster.wav")


async def main() -> int:
    async with OrpheusTTS(URLS, api_key=os.environ.get("ORPHEUS_API_KEY"),
                          hedge_ttfb_ms=300) as tts:
        stream = tts.stream("Hello from every endpoint at once.", temperature=0.4, timeout_s=30)
        try:
            with WavWriter(OUT) as wav:
                async for pcm in stream:
                    wav.write(pcm)
        except StreamError as exc:  # an `error` frame (DeadlineExceededError is one too)
            print(f"service error {exc.code} (retryable: {exc.retryable})")
            return 1
        except httpx.HTTPStatusError as exc:  # refused at stream start, OpenAI error body
            print(f"refused: {exc.response.status_code} {exc.response.json()['error']}")
            return 1
        except (httpx.HTTPError, CircuitOpenError) as exc:  # network, broken stream, breaker
            print(f"unavailable: {exc}")
            return 1
        print(f"{wav.seconds:.2f} s of audio from {stream.info.endpoint}, first audio after "
              f"{stream.info.ttfa_ms:.0f} ms (hedged: {stream.info.hedged}) -> {OUT}")
        for ep in tts.endpoints():
            print(f"  {ep.url}: score {ep.score_ms:.0f} ms, breaker {ep.breaker}")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
