"""Runs one guide example unchanged, recording what it did with the SDK.

`python -m tests.examples.harness RECORD.json run EXAMPLE.py` runs the file as `__main__`;
`python -m tests.examples.harness RECORD.json serve EXAMPLE.py PORT` serves its FastAPI `app`
with uvicorn until SIGTERM. Either way every `OrpheusTTS.stream` call (text, chunks, bytes,
whether it ran to its end or raised) and every `close()` is written to RECORD.json at exit.
The SDK itself is not changed: the wrappers only count what passes through.
"""

from __future__ import annotations

import atexit
import json
import runpy
import sys
from pathlib import Path

from orpheus_tts.sdk import OrpheusTTS

record: dict = {"streams": [], "closed": 0}
_original_stream = OrpheusTTS.stream
_original_close = OrpheusTTS.close


def _stream(self, *args, **kwargs):
    entry = {"args": [a for a in args if isinstance(a, str)], "text": kwargs.get("text"),
             "chunks": 0, "bytes": 0, "completed": False, "error": None}
    if entry["text"] is None and entry["args"]:
        entry["text"] = entry["args"][0]
    record["streams"].append(entry)

    async def counted():
        try:
            async for chunk in _original_stream(self, *args, **kwargs):
                entry["chunks"] += 1
                entry["bytes"] += len(chunk)
                yield chunk
            entry["completed"] = True
        except BaseException as exc:
            entry["error"] = f"{type(exc).__name__}: {exc}"
            raise

    return counted()


async def _close(self, *args, **kwargs):
    record["closed"] += 1
    return await _original_close(self, *args, **kwargs)


def main(argv: list[str]) -> int:
    out, mode, example = Path(argv[0]), argv[1], Path(argv[2]).resolve()
    atexit.register(lambda: out.write_text(json.dumps(record)))
    OrpheusTTS.stream = _stream  # type: ignore[method-assign]
    OrpheusTTS.close = _close  # type: ignore[method-assign]
    if mode == "run":
        sys.argv = [str(example)]
        runpy.run_path(str(example), run_name="__main__")
        return 0
    import signal

    import uvicorn

    # uvicorn re-raises SIGTERM after its graceful shutdown; exit normally then, so the
    # record is written (atexit does not run for a process killed by a signal).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sys.path.insert(0, str(example.parent))
    uvicorn.run(f"{example.stem}:app", host="127.0.0.1", port=int(argv[3]), log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
