"""Calls `audio.speech.create` of the real `openai` or `groq` client, as their users write it.

Usage: speech_calls.py PLAN.json OUTDIR. PLAN is {"client": "openai"|"groq", "base_url",
"api_key", "calls": [{"kwargs": {...}, "mode": "create"|"stream"|"sse"}, ...]}. For call i,
OUTDIR/i.bin gets the body (for "sse": the decoded audio of the delta events) and the
result list printed as JSON on stdout gets {status, headers, events, error}.
"""

import base64
import json
import sys
from pathlib import Path


def make_client(plan):
    if plan["client"] == "groq":
        from groq import Groq
        return Groq(base_url=plan["base_url"], api_key=plan["api_key"], max_retries=0)
    from openai import OpenAI
    return OpenAI(base_url=plan["base_url"], api_key=plan["api_key"], max_retries=0)


def run_call(client, call, out: Path) -> dict:
    kwargs, mode = call["kwargs"], call.get("mode", "create")
    speech = client.audio.speech
    if mode == "create":
        response = speech.create(**kwargs)
        # openai returns HttpxBinaryResponseContent (.content); groq a BinaryAPIResponse (.read())
        out.write_bytes(response.content if hasattr(response, "content") else response.read())
        http = getattr(response, "http_response", None) or response.response  # groq | openai
        return {"status": http.status_code, "headers": dict(http.headers)}
    with speech.with_streaming_response.create(**kwargs) as response:
        headers = dict(response.headers)
        if mode == "stream":
            with open(out, "wb") as f:
                for part in response.iter_bytes():
                    f.write(part)
            return {"status": response.status_code, "headers": headers}
        events, audio = [], bytearray()
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[len("data: "):])
            if event.get("type") == "speech.audio.delta":
                audio += base64.b64decode(event.pop("audio"))
            events.append(event)
        out.write_bytes(bytes(audio))
        return {"status": response.status_code, "headers": headers, "events": events}


def main() -> None:
    plan = json.loads(Path(sys.argv[1]).read_text())
    outdir = Path(sys.argv[2])
    client = make_client(plan)
    results = []
    for i, call in enumerate(plan["calls"]):
        try:
            results.append(run_call(client, call, outdir / f"{i}.bin"))
        except Exception as exc:  # the test asserts on what the user would see
            results.append({"error": type(exc).__name__,
                            "status": getattr(exc, "status_code", None),
                            "message": str(exc)[:500]})
    print(json.dumps(results))


if __name__ == "__main__":
    main()
