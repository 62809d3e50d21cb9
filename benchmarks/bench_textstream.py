"""Streaming text input vs a sentence-at-a-time client, on the stand-in stack.

An LLM-like producer writes a fixed reply token by token at 30 and at 100 tokens/s. Two
clients speak it through the gateway's WebSocket with the SDK's `Session`, in the same run:

(a) streaming input: one `open` utterance fed every token as it is written (`append`), then
    `end`; the server cuts and pipelines the segments;
(b) the baseline: the client waits for each full sentence and sends it as one `speak`, in two
    variants: with Pipecat's own sentence aggregator (what a real voice agent runs: it calls a
    sentence done once the next word has begun, so `example.com` or `Dr. Who` stay whole), and
    an optimistic one that sends on the token ending in `.`, `!` or `?` (it would split
    `example.com`; it is the earliest any client could send).

Figures per client and rate: time from the first text token to the first audio; audio
underruns (gaps where a player would starve) as a count and a total length.

Normalisation: on CPU the stand-in engine is slower than real time, so a player at real-time
speed would starve on every chunk of either client. The engine's real-time factor is measured
first (RTF = the worker's generation time / audio time of one uncontended `speak`), and the
simulated player plays at 1/RTF speed: one audio second takes RTF wall seconds. A gap is time
during which that player has nothing to play although more audio is still to come; gaps are
reported divided by RTF, in audio-time seconds (what they would be on an engine running at
real time with the same relative speed). The producer's token rates are wall-clock, as a
real LLM's would be.

Run: `make bench-textstream` (or `.venv/bin/python benchmarks/bench_textstream.py [--quick]`).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.report import markdown_table, write_section  # noqa: E402
from orpheus_tts.sdk import OrpheusTTS  # noqa: E402
from orpheus_tts.session import Session, Utterance  # noqa: E402
from orpheus_tts.up import LocalStack, StackConfig, free_port  # noqa: E402

RATES = (30, 100)
ROUNDS = 3
MAX_TOKENS = 140  # per request: 20 SNAC frames, 1.7 s of audio from the random stand-in
WORKER_ARGS = ["--max-num-seqs", "8", "--max-model-len", "2048"]
# Two replies of the same length and shape but for the first sentence: one opens with a short
# sentence (the baseline sends it after six words), one with a longer sentence that has a
# clause early on. No abbreviations: the baseline's sentence test is a plain end mark.
REPLIES = {
    "short first sentence": (
        "Sure, I can help with that. The meeting with the design team is at three on Friday, "
        "in room 204. Please bring the report and the slides. Let me know if anything changes."),
    "long first sentence": (
        "I checked the calendar, and the meeting with the design team is at three on Friday in "
        "room 204. Please bring the report and the slides. Let me know if anything changes."),
}
PARAMS = {"max_tokens": MAX_TOKENS, "timeout_s": 300}
SENTENCE_END = re.compile(r"[.!?]$")
PIPECAT = "sentence at a time (Pipecat's aggregator)"
END_MARK = "sentence at a time (end mark at once)"


class Timeline:
    """Audio as it arrived: (wall time, seconds of audio) per chunk."""

    def __init__(self) -> None:
        self.chunks: list[tuple[float, float]] = []

    def add(self, pcm: bytes) -> None:
        self.chunks.append((time.perf_counter(), len(pcm) / 2 / 24_000))

    def underruns(self, rtf: float) -> tuple[int, float]:
        """Gaps of a player at 1/rtf speed that starts with the first chunk: (count, total
        length in audio-time seconds)."""
        count, total, end = 0, 0.0, None
        for arrived, seconds in self.chunks:
            if end is not None and arrived > end + 1e-3:
                count += 1
                total += arrived - end
            start = arrived if end is None else max(arrived, end)
            end = start + seconds * rtf
        return count, total / rtf


def tokens(reply: str) -> list[str]:
    return re.findall(r"\s*\S+", reply)  # words with their leading space, as LLM tokens come


def first_sentence_end(reply: str) -> int:
    """The index of the token that ends the first sentence."""
    return next(i for i, t in enumerate(tokens(reply)) if SENTENCE_END.search(t))


async def produce(reply: str, rate: float, send) -> list[float]:
    """Write the reply token by token; returns the time each token was written (before it
    was sent)."""
    written = []
    for token in tokens(reply):
        written.append(time.perf_counter())
        await send(token)
        await asyncio.sleep(1 / rate)
    return written


async def streaming(session: Session, reply: str, rate: float) -> dict:
    utt = await session.open(**PARAMS)
    timeline = Timeline()

    async def feed() -> list[float]:
        written = await produce(reply, rate, utt.send)
        await utt.end()
        return written

    feeder = asyncio.create_task(feed())
    async for pcm in utt:
        timeline.add(pcm)
    written = await feeder
    return {"written": written, "timeline": timeline, "requests": len(utt.segments)}


async def sentence_at_a_time(session: Session, reply: str, rate: float) -> dict:
    queue: asyncio.Queue[Utterance | None] = asyncio.Queue()
    timeline = Timeline()
    buffered: list[str] = []

    async def send(token: str) -> None:
        buffered.append(token)
        if SENTENCE_END.search(token):
            await queue.put(await session.speak("".join(buffered).strip(), **PARAMS))
            buffered.clear()

    async def feed() -> list[float]:
        written = await produce(reply, rate, send)
        if "".join(buffered).strip():
            await queue.put(await session.speak("".join(buffered).strip(), **PARAMS))
        await queue.put(None)
        return written

    return await _play(queue, timeline, asyncio.create_task(feed()))


async def pipecat_sentences(session: Session, reply: str, rate: float) -> dict:
    """The baseline as a real voice agent does it: Pipecat's own sentence aggregator (which
    waits for the next word before it calls a sentence done), one `speak` per sentence."""
    from pipecat.utils.text.simple_text_aggregator import SimpleTextAggregator

    aggregator = SimpleTextAggregator()
    queue: asyncio.Queue[Utterance | None] = asyncio.Queue()
    timeline = Timeline()

    async def send(token: str) -> None:
        async for sentence in aggregator.aggregate(token):
            await queue.put(await session.speak(sentence.text, **PARAMS))

    async def feed() -> list[float]:
        written = await produce(reply, rate, send)
        rest = await aggregator.flush()
        if rest is not None and rest.text.strip():
            await queue.put(await session.speak(rest.text.strip(), **PARAMS))
        await queue.put(None)
        return written

    return await _play(queue, timeline, asyncio.create_task(feed()))


async def _play(queue: asyncio.Queue, timeline: Timeline, feeder: asyncio.Task) -> dict:
    requests = 0
    while (utt := await queue.get()) is not None:
        requests += 1
        async for pcm in utt:
            timeline.add(pcm)
    return {"written": await feeder, "timeline": timeline, "requests": requests}


async def engine_rtf(session: Session) -> float:
    utt = await session.speak("The quick brown fox jumps over the lazy dog.", **PARAMS)
    async for _ in utt:
        pass
    return float(utt.stats["rtf"])


def summary(reply: str, rate: int, client: str, runs: list[dict]) -> dict:
    med = {k: statistics.median(x[k] for x in runs)
           for k in ("ttfa_s", "after_end_s", "underruns", "underrun_s", "audio_s")}
    return {"reply": reply, "rate": rate, "client": client, **med,
            "requests": runs[0]["requests"], "runs": runs}


async def run(url: str, key: str | None, rates: tuple[int, ...], rounds: int) -> dict:
    rows = []
    async with OrpheusTTS([url], api_key=key, hedge_ttfb_ms=None) as tts:
        async with tts.session() as session:
            await engine_rtf(session)  # warm-up
            rtf = statistics.median([await engine_rtf(session) for _ in range(3)])
            print(f"engine RTF {rtf:.2f}", flush=True)
            clients = (("streaming input", streaming), (PIPECAT, pipecat_sentences),
                       (END_MARK, sentence_at_a_time))
            for reply_name, reply in REPLIES.items():
                for rate in rates:
                    runs: dict[str, list[dict]] = {name: [] for name, _ in clients}
                    for _ in range(rounds):  # the two clients alternate: same conditions
                        for name, client in clients:
                            r = await client(session, reply, rate)
                            audio0 = r["timeline"].chunks[0][0]
                            count, length = r["timeline"].underruns(rtf)
                            runs[name].append({
                                "ttfa_s": audio0 - r["written"][0],
                                "after_end_s": audio0 - r["written"][first_sentence_end(reply)],
                                "underruns": count, "underrun_s": length,
                                "requests": r["requests"],
                                "audio_s": sum(s for _, s in r["timeline"].chunks)})
                    for name, _ in clients:
                        rows.append(row := summary(reply_name, rate, name, runs[name]))
                        print(f"{reply_name:<21} {rate:>3} tok/s {name:<18} TTFA "
                              f"{row['ttfa_s']:.3f} s (first sentence's last token → audio "
                              f"{row['after_end_s']:.3f} s), {row['underruns']:.0f} underruns, "
                              f"{row['underrun_s']:.2f} audio-s starved, {row['requests']} "
                              "requests", flush=True)
    return {"rtf": rtf, "rows": rows}


def table(result: dict) -> str:
    rows = result["rows"]
    by = {(r["reply"], r["rate"], r["client"]): r for r in rows}

    def versus(r: dict, baseline: str) -> str:
        if r["client"] != "streaming input":
            return "—"
        return f"{by[(r['reply'], r['rate'], baseline)]['ttfa_s'] / r['ttfa_s']:.2f}×"

    return markdown_table(
        ["reply", "tokens/s", "client", "engine requests", "first token → first audio (s)",
         "Pipecat baseline ÷ streaming", "end-mark baseline ÷ streaming",
         "first sentence's last token → first audio (s)", "underruns", "underrun total (audio s)", "audio (s)"],
        [[r["reply"], r["rate"], r["client"], r["requests"], f"{r['ttfa_s']:.3f}", versus(r, PIPECAT), versus(r, END_MARK),
          f"{r['after_end_s']:.3f}",
          f"{r['underruns']:.0f}", f"{r['underrun_s']:.2f}", f"{r['audio_s']:.1f}"]
         for r in rows],
        align="lrlrrrrrrrr")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one round; no doc")
    args = ap.parse_args(argv)
    rounds = 1 if args.quick else ROUNDS
    tmp = Path(tempfile.mkdtemp(prefix="bench-textstream-"))
    stack = LocalStack(StackConfig(port=free_port(), key_file=tmp / "key", log_dir=tmp / "logs",
                                   worker_args=WORKER_ARGS), log=print)
    try:
        stack.start()
        result = asyncio.run(run(stack.url, stack.api_key, RATES, rounds))
    finally:
        stack.stop()
    body = (
        "The stand-in stack of `make run` (a gateway and two CPU workers on the random-weight "
        f"stand-in checkpoint, `{' '.join(WORKER_ARGS)}`; the machine is shared with other "
        "work). The replies, written one word token at a time: "
        + "; ".join(f"*{k}*: \"{v}\"" for k, v in REPLIES.items()) + ". Every engine "
        f"request asks for {MAX_TOKENS} tokens ({MAX_TOKENS // 7} SNAC frames, "
        f"{MAX_TOKENS // 7 * 2048 / 24000:.1f} s of audio), so audio length follows the number "
        f"of requests, not the text. Both clients use one SDK `Session` and alternate round by "
        f"round (so both see the same machine conditions); medians of {rounds} runs. *First "
        "sentence's last token → first audio* leaves the LLM's writing out: the server's and "
        "client's own part, from when the token ending the first sentence was written. Engine RTF measured in the same run: **{result['rtf']:.2f}** (median of 3 "
        "uncontended `speak`s; worker generation time / audio time).\n\n"
        + table(result) + "\n\n"
        "Underruns: a player that starts at the first audio and plays at 1/RTF speed (one "
        "audio second per RTF wall seconds); a gap is time it has nothing to play while audio is "
        "still to come, reported divided by RTF, in audio seconds. The baseline's sentences "
        "queue behind each other on the session (one `speak` at a time), which is what a "
        "client of the one-shot API gets; streaming input starts the next segment's request "
        "once the previous one has its first audio, and relays both in order. Where streaming "
        "input can start before the first sentence is complete (a clause of at least 12 "
        "characters, or the 0.5 s maximum wait) it is faster to first audio. Where the first "
        "sentence is itself short, all three send the same first request: Pipecat's aggregator one "
        "token after the sentence's last (it waits for the next word), the end-mark client on "
        "that last token (a test a real client cannot trust: it also fires on `example.` of "
        "`example.com`), and streaming input on that same last token by a speculative start "
        "(its upstream opens when the text ends in a sentence end, its audio is held until the "
        "next token confirms the cut, and a refuted one is aborted)."
        " Underruns: on this machine two requests at once (the head segment and the next) run on "
        "two workers that share two cores with each other and with the gateway, so each runs "
        "slower than the uncontended RTF the player is normalised by; the baseline never runs "
        "two at once. That is a CPU stand-in effect (a GPU batches concurrent requests), and it "
        "is why streaming input shows more starved audio here."
    )
    if not args.quick:
        write_section("textstream", "Streaming text input vs sentence at a time",
                      "make bench-textstream",
                      "first text token to first audio, and underruns of an RTF-normalised "
                      "player, for streaming input and a sentence-at-a-time client, same run, "
                      "same text, LLM-like producers at 30 and 100 tokens/s.",
                      body, result)
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
