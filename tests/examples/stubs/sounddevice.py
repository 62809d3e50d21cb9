"""Stand-in for the `sounddevice` package in the guide's realtime example: there is no sound card
here. Records every `play` call (dtype, samples, rate, blocking) as a JSON line in
$SOUNDDEVICE_STUB_LOG so the test can check what would have been played."""

import json
import os


def _record(entry: dict) -> None:
    with open(os.environ["SOUNDDEVICE_STUB_LOG"], "a") as f:
        f.write(json.dumps(entry) + "\n")


def play(data, samplerate=None, blocking=False, **kwargs):
    _record({"call": "play", "dtype": str(data.dtype), "samples": int(data.size),
             "samplerate": samplerate, "blocking": blocking})


def wait():
    _record({"call": "wait"})


def stop():
    _record({"call": "stop"})
