"""`orpheus-tts say "text"`: stream speech from a gateway or worker into a WAV file.

Prints the time to first audio and the real-time factor (wall time / audio time; under 1 is
faster than real time). Exit status 0 on success, 1 when the service refused or failed, 2 on
bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

import httpx

from orpheus_tts.errors import OrpheusError
from orpheus_tts.sdk import OrpheusTTS
from orpheus_tts.up import local_api_key
from orpheus_tts.wav import WavWriter

DEFAULT_URL = "http://127.0.0.1:8000"  # the local stack's gateway (`make run`)


def _param(value: str) -> tuple[str, Any]:
    key, sep, raw = value.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {value!r}")
    try:
        return key, json.loads(raw)
    except ValueError:
        return key, raw


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orpheus-tts say", description="Speak text through the v1 API and write a WAV."
    )
    parser.add_argument("text", help="text to speak ('-' reads it from stdin)")
    parser.add_argument(
        "--url", action="append", dest="urls", metavar="URL",
        help=f"gateway or worker base URL; repeat for several "
             f"(default: $ORPHEUS_URL or {DEFAULT_URL})",
    )
    parser.add_argument("--api-key", default=None,
                        help="API key (default: $ORPHEUS_API_KEY; for the default URL, the key "
                             "`orpheus-tts up` saved)")
    parser.add_argument("--voice", default=None)
    parser.add_argument("--model", default=None,
                        help="a served model name: picks the gateway's model pool "
                        "(default: by voice, else the default pool)")
    parser.add_argument("-o", "--output", default="say.wav", help="WAV file to write")
    parser.add_argument("--timeout", type=float, default=None, dest="timeout_s",
                        help="request deadline in seconds (sent as timeout_s)")
    parser.add_argument("--hedge-ms", type=float, default=400.0,
                        help="hedge after this many ms without audio (0 disables)")
    parser.add_argument("--param", action="append", type=_param, default=[], metavar="KEY=VALUE",
                        help="extra request parameter, e.g. --param temperature=0.4")
    return parser


def target(urls: list[str] | None, api_key: str | None,
           environ: Mapping[str, str]) -> tuple[list[str], str | None]:
    """Where to speak and with which key: flags, then the environment, then the local stack.

    The key `orpheus-tts up` saved is used only for the local stack's default URL, so it is
    never sent to another server.
    """
    urls = urls or [environ.get("ORPHEUS_URL") or DEFAULT_URL]
    api_key = api_key or environ.get("ORPHEUS_API_KEY") or None
    if api_key is None and urls == [DEFAULT_URL]:
        api_key = local_api_key(dict(environ))
    return urls, api_key


async def _say(args: argparse.Namespace) -> int:
    urls, api_key = target(args.urls, args.api_key, os.environ)
    text = sys.stdin.read() if args.text == "-" else args.text
    params = dict(args.param)
    started = time.monotonic()
    async with OrpheusTTS(urls, api_key=api_key, hedge_ttfb_ms=args.hedge_ms or None) as tts:
        if args.model:
            params["model"] = args.model
        stream = tts.stream(text, args.voice, timeout_s=args.timeout_s, **params)
        with WavWriter(args.output) as wav:
            try:
                async for pcm in stream:
                    wav.write(pcm)
            except BaseException:
                wav.close()
                os.remove(args.output)  # no truncated file left behind
                raise
        wall_s = time.monotonic() - started
        info = stream.info
        audio_s = wav.seconds
    ttfa = f"{info.ttfa_ms:.0f} ms" if info.ttfa_ms is not None else "n/a (no audio)"
    rtf = f"{wall_s / audio_s:.2f}" if audio_s > 0 else "n/a"
    print(f"wrote {args.output}: {audio_s:.2f} s of audio from {info.endpoint}")
    print(f"time to first audio: {ttfa}")
    print(f"real-time factor: {rtf} (wall {wall_s:.2f} s / audio {audio_s:.2f} s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(_say(args))
    except (OrpheusError, httpx.HTTPError, asyncio.TimeoutError) as exc:
        print(f"orpheus-tts say: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
