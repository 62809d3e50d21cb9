"""Streaming text input vs a sentence-at-a-time client, on the stand-in stack.

An LLM-like producer writes a fixed reply (`REPLIES`) token by token at 30 and at 100
tokens/s. The clients speak it through the gateway's WebSocket with the SDK's `Session`, in
the same run, in rounds: each round, every client once at each rate, in a shuffled order.

(a) streaming input: one `open` utterance fed every token as it is written (`append`), then
    `end`; the server cuts and pipelines the segments;
(b) the baseline: the client waits for each full sentence and sends it as one `speak`, in two
    variants: with Pipecat's own sentence aggregator (what a real voice agent runs: it calls a
    sentence done once the next word has begun, so `example.com` or `Dr. Who` stay whole), and
    an optimistic one that sends on the token ending in `.`, `!` or `?` (it would split
    `example.com`; it is the earliest any client could send).

Figures per client and rate: time from the first text token to the first audio (min, median,
max; the ratio of the baseline's median to streaming input's, the median of each round's own
ratio, and the rounds streaming input won); audio underruns (gaps where a player would starve)
as a count and a total length.

Normalisation: on CPU the stand-in engine is slower than real time, so a player at real-time
speed would starve on every chunk of either client. The engine's real-time factor is measured
first (RTF = the worker's generation time / audio time of one uncontended `speak`), and the
simulated player plays at 1/RTF speed: one audio second takes RTF wall seconds. A gap is time
during which that player has nothing to play although more audio is still to come; gaps are
reported divided by RTF, in audio-time seconds (what they would be on an engine running at
real time with the same relative speed). The producer's token rates are wall-clock, as a
real LLM's would be.

Run: `make bench-textstream` (or `.venv/bin/python benchmarks/bench_textstream.py [--quick]
[--rounds N] [--reply NAME]`); `benchmarks/probe_textstream_path.py` runs the same clients
against fake workers with a fixed time to first audio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "gateway")]

from benchmarks.report import markdown_table, write_section  # noqa: E402
from orpheus_tts.sdk import OrpheusTTS  # noqa: E402
from orpheus_tts.session import Session, Utterance  # noqa: E402
from orpheus_tts.up import LocalStack, StackConfig, free_port  # noqa: E402

RATES = (30, 100)
ROUNDS = 10
SEED = 15  # the order of the clients in each round is shuffled with this seed
SETTLE_S = 0.5  # pause between runs, so one run's last requests never overlap the next
MAX_TOKENS = 70  # per request: 10 SNAC frames, 0.85 s of audio from the random stand-in
# The workers' niceness here: `make run`'s 10 keeps a laptop's gateway responsive, but on a
# machine shared with other work it hands that work the engine's CPU, and the run-to-run spread
# swamps what is measured. Both clients run on the same stack either way.
WORKER_NICE = 0
WORKER_ARGS = ["--max-num-seqs", "8", "--max-model-len", "2048"]
# A voice agent's reply as an LLM writes it: a first sentence with a clause early on (the
# usual shape: what was done, then the answer), then sentence-sized ones. No abbreviations:
# the end-mark baseline's sentence test is a plain end mark. `short first sentence` (no clause
# of the minimum size before its end) is the case where streaming input can only start when the
# sentence ends; `probe_textstream_path.py` measures it (`--reply`).
REPLIES = {
    "typical reply": (
        "I checked your calendar, and the design review with the product team is on Friday at "
        "three, in room 204. Please bring the quarterly report and the slides from last week. "
        "If anything changes, I will send you a message right away."),
    "short first sentence": (
        "Sure, I can help with that. The meeting with the design team is at three on Friday, "
        "in room 204. Please bring the report and the slides. Let me know if anything changes."),
}
DEFAULT_REPLY = "typical reply"
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
    """Opens the utterance when the first token is written (inside the timed span), then
    `append`s every token, then `end`."""
    timeline = Timeline()
    opened: asyncio.Future[Utterance] = asyncio.get_running_loop().create_future()

    async def send(token: str) -> None:
        if not opened.done():
            opened.set_result(await session.open(**PARAMS))
        await opened.result().send(token)

    async def feed() -> list[float]:
        written = await produce(reply, rate, send)
        await opened.result().end()
        return written

    feeder = asyncio.create_task(feed())
    utt = await opened
    async for pcm in utt:
        timeline.add(pcm)
    written = await feeder
    return {"written": written, "timeline": timeline, "requests": len(utt.segments),
            "segments": list(utt.segments)}


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


CLIENTS = (("streaming input", streaming), (PIPECAT, pipecat_sentences),
           (END_MARK, sentence_at_a_time))
STREAMING = CLIENTS[0][0]


def measured(r: dict, reply: str, rtf: float) -> dict:
    audio0 = r["timeline"].chunks[0][0]
    count, length = r["timeline"].underruns(rtf)
    return {"ttfa_s": audio0 - r["written"][0],
            "after_end_s": audio0 - r["written"][first_sentence_end(reply)],
            "underruns": count, "underrun_s": length, "requests": r["requests"],
            "audio_s": sum(s for _, s in r["timeline"].chunks), "segments": r.get("segments")}


def summary(reply: str, rate: int, client: str, runs: list[dict]) -> dict:
    ttfa = [x["ttfa_s"] for x in runs]
    med = {k: statistics.median(x[k] for x in runs)
           for k in ("ttfa_s", "after_end_s", "underruns", "underrun_s", "audio_s")}
    return {"reply": reply, "rate": rate, "client": client, **med,
            "ttfa_min_s": min(ttfa), "ttfa_max_s": max(ttfa),
            "requests": statistics.median(x["requests"] for x in runs), "runs": runs,
            "cuts": sorted({" | ".join(x["segments"]) for x in runs if x["segments"]})}


async def compare(session: Session, reply_name: str, rates: tuple[int, ...], rounds: int,
                  rtf: float, seed: int = SEED,
                  progress: Path | None = None) -> tuple[list[dict], list[dict]]:
    """Every client once per rate in each of `rounds` rounds, in an order shuffled per round
    (so all see the same machine conditions, and both rates have as many rounds if the run is
    cut short); returns the summary rows and each rate's load averages. Each run is appended
    to `progress` (JSON lines) as it ends."""
    reply, rng = REPLIES[reply_name], random.Random(seed)
    runs = {rate: {name: [] for name, _ in CLIENTS} for rate in rates}
    load = {rate: [] for rate in rates}
    for n in range(rounds):
        for rate in rates:
            load[rate].append(os.getloadavg()[0])
            for name, client in rng.sample(CLIENTS, len(CLIENTS)):
                m = measured(await client(session, reply, rate), reply, rtf)
                runs[rate][name].append(m)
                print(f"round {n + 1} {rate:>3} tok/s {name:<42} TTFA {m['ttfa_s']:.3f} s",
                      flush=True)
                if progress is not None:
                    with progress.open("a") as f:
                        f.write(json.dumps({"round": n, "rate": rate, "client": name,
                                            "load1": os.getloadavg()[0], **m}) + "\n")
                await asyncio.sleep(SETTLE_S)
            load[rate].append(os.getloadavg()[0])
    rows, loads = [], []
    for rate in rates:
        loads.append({"rate": rate, "load1_min": min(load[rate]), "load1_max": max(load[rate])})
        for name, _ in CLIENTS:
            rows.append(row := summary(reply_name, rate, name, runs[rate][name]))
            if name != STREAMING:  # the same round's streaming run: a paired ratio
                pairs = list(zip(runs[rate][name], runs[rate][STREAMING]))
                row["paired_ratio"] = statistics.median(b["ttfa_s"] / s["ttfa_s"]
                                                        for b, s in pairs)
                row["streaming_won"] = sum(s["ttfa_s"] < b["ttfa_s"] for b, s in pairs)
            print(f"{reply_name} {rate:>3} tok/s {name:<42} TTFA min/median/max "
                  f"{row['ttfa_min_s']:.3f}/{row['ttfa_s']:.3f}/{row['ttfa_max_s']:.3f} s, "
                  f"sentence end → audio {row['after_end_s']:.3f} s, {row['underruns']:.0f} "
                  f"underruns, {row['underrun_s']:.2f} audio-s starved", flush=True)
        print(f"load average (1 min) during {rate} tok/s: {min(load[rate]):.1f}–"
              f"{max(load[rate]):.1f}", flush=True)
    return rows, loads


async def run(url: str, key: str | None, reply_name: str, rates: tuple[int, ...],
              rounds: int, progress: Path | None = None) -> dict:
    async with OrpheusTTS([url], api_key=key, hedge_ttfb_ms=None) as tts:
        async with tts.session() as session:
            await engine_rtf(session)  # warm-up
            rtfs = [await engine_rtf(session) for _ in range(3)]
            rtf = statistics.median(rtfs)
            print(f"engine RTF {rtf:.2f} ({', '.join(f'{x:.2f}' for x in rtfs)})", flush=True)
            rows, loads = await compare(session, reply_name, rates, rounds, rtf,
                                        progress=progress)
            rtfs_after = [await engine_rtf(session) for _ in range(3)]
    return {"rtf": rtf, "rtf_runs": rtfs, "rtf_after": rtfs_after, "rows": rows,
            "loads": loads, "rounds": rounds, "seed": SEED}


def ratio(rows: list[dict], row: dict, baseline: str) -> str:
    """Ratio of the medians (and, in brackets, the median of each round's own ratio and the
    rounds in which streaming input was first)."""
    if row["client"] != STREAMING:
        return "—"
    base = next(r for r in rows if r["rate"] == row["rate"] and r["client"] == baseline)
    return (f"**{base['ttfa_s'] / row['ttfa_s']:.2f}×** ({base['paired_ratio']:.2f}×; "
            f"{base['streaming_won']}/{len(base['runs'])})")


def table(result: dict) -> str:
    rows = result["rows"]
    return markdown_table(
        ["tokens/s", "client", "engine requests",
         "first token → first audio (s), min / **median** / max", "Pipecat baseline ÷ streaming",
         "end-mark baseline ÷ streaming", "first sentence's last token → first audio (s)",
         "underruns", "underrun total (audio s)", "audio (s)"],
        [[r["rate"], r["client"], f"{r['requests']:.0f}",
          f"{r['ttfa_min_s']:.3f} / **{r['ttfa_s']:.3f}** / {r['ttfa_max_s']:.3f}",
          ratio(rows, r, PIPECAT), ratio(rows, r, END_MARK), f"{r['after_end_s']:.3f}",
          f"{r['underruns']:.0f}", f"{r['underrun_s']:.2f}", f"{r['audio_s']:.1f}"]
         for r in rows],
        align="rlrrrrrrrr")


def describe(result: dict, reply: str) -> str:
    """The doc section's text around the table."""
    loads = ", ".join(f"{x['load1_min']:.1f}–{x['load1_max']:.1f} at {x['rate']} tokens/s"
                      for x in result["loads"])
    body = (
        "The stand-in stack of `make run` (a gateway and two CPU workers on the random-weight "
        f"stand-in checkpoint, `{' '.join(WORKER_ARGS)}`, the workers at niceness "
        f"{result['worker_nice']}), on a machine shared with other "
        f"work: its 1-minute load average during the runs was {loads}. The reply "
        f"(*{reply}*), written by an LLM-like producer one word per token (with its "
        "leading space; a real LLM's tokens are about 1.3 per English word, so at the same "
        f"token rate it writes the sentence more slowly than here): \"{REPLIES[reply]}\"\n\n"
        "Clients, all on one SDK `Session`: *streaming input* opens an utterance as the first "
        "token is written and `append`s every token (then `end`); the server's cuts: "
        f"{cuts(result)}. The baselines wait for each "
        "full sentence and send it as one `speak`: *Pipecat's aggregator* (what a voice agent "
        "runs; it calls a sentence done once the next word has begun) and *end mark at once* "
        "(sends on the token ending in `.`, `!` or `?`: the earliest any client could send, "
        "though a real one cannot trust it, as it fires on `example.` of `example.com`). "
        f"{result['rounds']} rounds; in each round every client speaks the whole reply once at "
        f"each rate, in an order shuffled per round (seed {SEED}), {SETTLE_S} s apart. Every "
        "engine "
        f"request asks for {MAX_TOKENS} tokens ({MAX_TOKENS // 7} SNAC frames, "
        f"{MAX_TOKENS // 7 * 2048 / 24000:.1f} s of audio), so audio length follows the number "
        "of requests, not the text. *First token → first audio* runs from the moment the first "
        "token was written to the first audio chunk received; *first sentence's last token → "
        "first audio* leaves the LLM's writing of the first sentence out. Ratios: baseline's "
        "median ÷ streaming input's median, and in brackets the median of the rounds' own "
        "ratios (each baseline run against the same round's streaming run) and the number of "
        "rounds in which streaming input had the first audio sooner. Engine RTF: "
        f"**{result['rtf']:.2f}** (median of 3 uncontended `speak`s before "
        f"the runs: {', '.join(f'{x:.2f}' for x in result['rtf_runs'])}; after them: "
        f"{', '.join(f'{x:.2f}' for x in result['rtf_after'])}; worker generation time / audio "
        f"time). The whole run took {result['wall_s'] / 60:.0f} min.\n\n"
        + table(result) + "\n\n"
        "Underruns (medians per run): a player that starts at the first audio and plays at "
        "1/RTF speed, i.e. one audio second per RTF wall seconds, so that an engine exactly as "
        "fast as the one measured uncontended would never starve it; a gap is time it has "
        "nothing to play while audio is still to come, divided by RTF, i.e. in seconds of audio "
        "as they would be on an engine running at real time. The baseline's sentences queue "
        "behind each other on the session (one `speak` at a time); streaming input starts the "
        "next segment's request once the previous one has its first audio, so on this machine "
        "two requests run at once on two workers sharing two cores with each other and the "
        "gateway, each slower than the uncontended RTF the player is normalised by (a GPU "
        "batches concurrent requests): that is why streaming input can show more starved audio "
        "here."
    )
    return body


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="two rounds; no doc")
    ap.add_argument("--rounds", type=int, default=ROUNDS)
    ap.add_argument("--reply", choices=sorted(REPLIES), default=DEFAULT_REPLY)
    ap.add_argument("--worker-nice", type=int, default=WORKER_NICE)
    args = ap.parse_args(argv)
    rounds = 2 if args.quick else args.rounds
    tmp = Path(tempfile.mkdtemp(prefix="bench-textstream-"))
    stack = LocalStack(StackConfig(port=free_port(), key_file=tmp / "key", log_dir=tmp / "logs",
                                   worker_args=WORKER_ARGS, worker_nice=args.worker_nice),
                       log=print)
    began = time.monotonic()
    try:
        stack.start()
        progress = tmp / "runs.jsonl"
        print(f"each run is logged to {progress} as it ends", flush=True)
        result = asyncio.run(run(stack.url, stack.api_key, args.reply, RATES, rounds, progress))
    finally:
        stack.stop()
    result["wall_s"] = time.monotonic() - began
    result["worker_nice"] = args.worker_nice
    body = describe(result, args.reply)
    if not args.quick:
        write_section("textstream", "Streaming text input vs sentence at a time",
                      "make bench-textstream" + ("" if rounds == ROUNDS else
                                                 f" (bench_textstream.py --rounds {rounds})"),
                      "first text token to first audio (min/median/max), and underruns of an "
                      "RTF-normalised player, for streaming input and two sentence-at-a-time "
                      "clients, same run, same text, an LLM-like producer at 30 and 100 "
                      "tokens/s, clients interleaved in shuffled order.",
                      body, result)
    print(body)
    return 0


def cuts(result: dict) -> str:
    """The segments the server cut the reply into, per rate (every distinct cut seen)."""
    return "; ".join(f"at {r['rate']} tokens/s " + " or ".join(f"`{c}`" for c in r["cuts"])
                     for r in result["rows"] if r["client"] == STREAMING)


if __name__ == "__main__":
    raise SystemExit(main())
