"""Canopy Labs' `orpheus-tts` 0.1.6 client (`OrpheusClient`), as its users write it.

Runs in its own venv: it imports as `orpheus_tts`, like this project. It is always given
`voice_endpoint_map` or `ws_url`, never left to fetch its default config service.

Usage: canopy_client.py SCENARIO WS_URL API_KEY [VOICE]. Prints one JSON object.
Scenarios: legacy, legacy_pool, multiplexed8, auth_failure, auth_failure_multiplexed,
bad_voice, disconnect.
"""

import asyncio
import json
import sys
import time

from orpheus_tts import AuthenticationError, OrpheusClient, OrpheusError

TEXT = "Hello from Canopy's client."


def outcome(fn):
    t0 = time.monotonic()
    try:
        value = fn()
        return {"ok": True, **value, "elapsed_s": time.monotonic() - t0}
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__, "message": str(exc)[:300],
                "is_auth_error": isinstance(exc, AuthenticationError),
                "is_orpheus_error": isinstance(exc, OrpheusError),
                "elapsed_s": time.monotonic() - t0}


def main() -> None:
    scenario, ws_url, api_key = sys.argv[1], sys.argv[2], sys.argv[3]
    voice = sys.argv[4] if len(sys.argv) > 4 else "tara"
    endpoint_map = {voice: ws_url}

    if scenario == "legacy":  # a fresh socket per request
        def run():
            client = OrpheusClient(api_key=api_key, voice_endpoint_map=endpoint_map)
            chunks = [list(client.stream(TEXT, voice=voice)) for _ in range(2)]
            return {"pcm_bytes": [sum(map(len, c)) for c in chunks]}
    elif scenario == "legacy_pool":  # connect(): a pool of sockets, one request at a time each
        def run():
            client = OrpheusClient(api_key=api_key, voice_endpoint_map=endpoint_map)
            client.connect(pool_size=2)
            try:
                sizes = [len(client.stream_to_bytes(TEXT, voice=voice)) for _ in range(3)]
            finally:
                client.close()
            return {"pcm_bytes": sizes}
    elif scenario == "multiplexed8":  # 8 requests at once on one socket
        def run():
            client = OrpheusClient(api_key=api_key, voice_endpoint_map=endpoint_map)
            client.connect(ws_url=ws_url, websocket_count=1)

            async def all8():
                return await asyncio.gather(*(
                    client.stream_to_bytes_async(f"{TEXT} Number {i}.", voice=voice)
                    for i in range(8)))
            try:
                pcm = asyncio.run(all8())
            finally:
                client.close()
            return {"pcm_bytes": [len(b) for b in pcm],
                    "first_samples": [int.from_bytes(b[:2], "little", signed=True) for b in pcm]}
    elif scenario in ("auth_failure", "bad_voice"):
        def run():
            client = OrpheusClient(api_key=api_key, voice_endpoint_map=endpoint_map)
            return {"pcm_bytes": len(client.stream_to_bytes(TEXT, voice=voice))}
    elif scenario == "auth_failure_multiplexed":
        def run():
            client = OrpheusClient(api_key=api_key, voice_endpoint_map=endpoint_map)
            client.connect(ws_url=ws_url, websocket_count=1)
            client.close()
            return {}
    elif scenario == "disconnect":  # first audio, then the app closes the client
        def run():
            client = OrpheusClient(api_key=api_key, voice_endpoint_map=endpoint_map)
            client.connect(ws_url=ws_url, websocket_count=1)
            first = next(iter(client.stream(TEXT, voice=voice)))
            client.close()
            return {"first_audio": len(first)}
    else:
        raise SystemExit(f"unknown scenario {scenario}")
    print(json.dumps(outcome(run)))


if __name__ == "__main__":
    main()
