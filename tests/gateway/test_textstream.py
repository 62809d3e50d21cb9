"""`TextUtterance` with fake upstreams: order, exactly one terminal, pipelining, cancel."""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orpheus_gateway.segmenter import SegmenterConfig
from orpheus_gateway.textstream import (Cancelled, Done, Failed, SegmentFailed, TextUtterance,
                                        UtteranceClosed)
from orpheus_tts import protocol as p


class FakeUpstreams:
    """`open_segment` for the tests: each segment yields `chunks` chunks tagged (segment, i);
    counts what is open, so a test can assert every upstream was closed."""

    def __init__(self, chunks: int = 3, chunk_delay: float = 0.002, open_delay: float = 0.002,
                 fail_on: str | None = None, swallow_cancel: bool = False):
        self.chunks, self.chunk_delay, self.open_delay = chunks, chunk_delay, open_delay
        self.fail_on = fail_on
        self.swallow_cancel = swallow_cancel  # as 3.11's `wait_for` may, once per stream
        self.opened: list[str] = []
        self.called_at: list[float] = []  # when each open began
        self.open_at: list[float] = []
        self.closed = 0

    @property
    def live(self) -> int:
        return len(self.opened) - self.closed

    async def __call__(self, text: str):
        self.called_at.append(time.monotonic())
        await asyncio.sleep(self.open_delay)
        index = len(self.opened)
        self.opened.append(text)
        self.open_at.append(time.monotonic())
        return _FakeStream(self, index, text)


class _FakeStream:
    def __init__(self, fake: FakeUpstreams, index: int, text: str):
        self.fake, self.index, self.text = fake, index, text
        self._closed = False

    async def audio(self):
        swallow = self.fake.swallow_cancel
        for i in range(self.fake.chunks):
            try:
                await asyncio.sleep(self.fake.chunk_delay)
            except asyncio.CancelledError:
                if not swallow:
                    raise
                swallow = False
            if self.fake.fail_on and self.fake.fail_on in self.text and i == 1:
                raise SegmentFailed(p.ErrorCode.ENGINE_ERROR, "engine failed", True)
            yield f"{self.index}\x00{i}\x00{self.text}".encode()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self.fake.closed += 1


class Sink:
    def __init__(self) -> None:
        self.events: list = []  # ("audio", bytes, t) / ("end", terminal, t)

    async def audio(self, pcm: bytes) -> bool:
        self.events.append(("audio", pcm, time.monotonic()))
        return True

    async def end(self, terminal) -> None:
        self.events.append(("end", terminal, time.monotonic()))

    async def segment(self, index: int, text: str | None) -> None:
        self.events.append(("segment", (index, text), time.monotonic()))

    @property
    def terminals(self) -> list:
        return [e[1] for e in self.events if e[0] == "end"]

    def _parts(self) -> list[list[str]]:
        return [e[1].decode().split("\x00") for e in self.events if e[0] == "audio"]

    @property
    def tags(self) -> list[tuple[int, int]]:
        """(upstream index, chunk index) of each audio chunk relayed."""
        return [(int(a), int(b)) for a, b, _ in self._parts()]

    @property
    def text_tags(self) -> list[tuple[str, int]]:
        """(segment text, chunk index) of each audio chunk relayed."""
        return [(t, int(b)) for _, b, t in self._parts()]


FAST = SegmenterConfig(min_chars=4, max_wait_s=0.05)


def make(fake: FakeUpstreams, sink: Sink, **kw) -> TextUtterance:
    utt = TextUtterance(fake, sink.audio, sink.end, segmenter=kw.pop("segmenter", FAST), **kw)
    utt.start()
    return utt


async def test_text_in_pieces_is_spoken_in_order_and_ends_with_one_done():
    fake, sink = FakeUpstreams(), Sink()
    utt = make(fake, sink)
    for piece in ["Hello there", ", friend. How", " are you", " today? I am", " fine."]:
        utt.append(piece)
        await asyncio.sleep(0.001)
    utt.end()
    await asyncio.wait_for(utt.wait(), 5)
    assert sink.terminals == [Done({"segments": len(fake.opened),
                                    "audio_bytes": sum(len(e[1]) for e in sink.events
                                                       if e[0] == "audio")})]
    assert sink.events[-1][0] == "end"
    assert fake.opened == [s.strip() for s in utt.segments]
    assert "".join(utt.segments) == "Hello there, friend. How are you today? I am fine."
    assert len(fake.opened) >= 3
    assert sink.tags == [(s, i) for s in range(len(fake.opened)) for i in range(fake.chunks)]
    assert fake.live == 0


async def test_segment_notes_frame_each_segment_audio_in_order():
    fake, sink = FakeUpstreams(chunks=2), Sink()
    utt = TextUtterance(fake, sink.audio, sink.end, segmenter=FAST, on_segment=sink.segment)
    utt.start()
    utt.append("First one here. Second one here.")
    utt.end()
    await asyncio.wait_for(utt.wait(), 5)
    assert [(e[0], e[1]) for e in sink.events] == [
        ("segment", (0, "First one here.")), ("audio", b"0\x000\x00First one here."),
        ("audio", b"0\x001\x00First one here."), ("segment", (0, None)),
        ("segment", (1, "Second one here.")), ("audio", b"1\x000\x00Second one here."),
        ("audio", b"1\x001\x00Second one here."), ("segment", (1, None)),
        ("end", Done({"segments": 2, "audio_bytes": 2 * 19 + 2 * 20}))]


async def test_the_next_segment_is_open_before_the_previous_audio_is_exhausted():
    fake, sink = FakeUpstreams(chunks=5, chunk_delay=0.01), Sink()
    utt = make(fake, sink)
    utt.append("First sentence here. Second sentence here. ")
    utt.end()
    await asyncio.wait_for(utt.wait(), 5)
    first = [e[2] for e in sink.events if e[0] == "audio" and e[1].startswith(b"0\x00")]
    assert len(fake.open_at) == 2 and fake.open_at[1] < max(first)
    # ... but not before the head's first audio: it never competes with that.
    assert fake.called_at[1] >= min(first) - 0.005
    assert sink.tags == [(s, i) for s in range(2) for i in range(5)]


async def test_lookahead_bounds_the_upstreams_open_at_once():
    fake, sink = FakeUpstreams(chunks=4, chunk_delay=0.005), Sink()
    utt = make(fake, sink, lookahead=1)
    peak = 0
    utt.append("One two three. Four five six. Seven eight nine. Ten eleven twelve. ")
    utt.end()
    while not utt.finished:
        peak = max(peak, fake.live)
        await asyncio.sleep(0.001)
    await utt.wait()
    assert peak == 2 and len(fake.opened) == 4


async def test_a_slow_writer_is_heard_after_the_maximum_wait():
    fake, sink = FakeUpstreams(), Sink()
    utt = make(fake, sink, segmenter=SegmenterConfig(min_chars=12, max_wait_s=0.05))
    utt.append("Hmm ")
    await asyncio.sleep(0.2)
    assert fake.opened == ["Hmm"]
    utt.end()
    await asyncio.wait_for(utt.wait(), 5)


async def test_the_maximum_wait_does_not_cut_a_sentence_while_earlier_audio_is_coming():
    """A writer faster than speech: the first segment goes out at its clause, and the rest of
    the sentence waits for its end (prosody) while the first segment is still being spoken,
    however long that takes; once nothing is left to speak, the maximum wait applies again."""
    fake, sink = FakeUpstreams(chunks=20, chunk_delay=0.02), Sink()
    utt = make(fake, sink, segmenter=SegmenterConfig(min_chars=4, max_wait_s=0.05))
    utt.append("I checked, and")
    for word in " the meeting is on Friday at three".split(" ")[1:]:
        await asyncio.sleep(0.03)
        utt.append(" " + word)
    utt.append(" today. Then we")
    assert fake.opened == ["I checked,"]

    async def third_opened() -> None:  # once all audio is relayed, "Then" has waited enough
        while len(fake.opened) < 3:
            await asyncio.sleep(0.005)

    await asyncio.wait_for(third_opened(), 5)
    assert fake.opened[1:] == ["and the meeting is on Friday at three today.", "Then"]
    utt.end()
    await asyncio.wait_for(utt.wait(), 5)
    assert fake.opened[3:] == ["we"]
    assert sink.terminals == [Done({"segments": 4, "audio_bytes": utt.audio_bytes})]


async def test_text_past_the_long_size_goes_out_after_the_wait_even_while_audio_is_coming():
    fake, sink = FakeUpstreams(chunks=20, chunk_delay=0.05), Sink()
    utt = make(fake, sink, segmenter=SegmenterConfig(min_chars=4, max_wait_s=0.05))
    utt.append("I checked, and")
    utt.append(" then" * 40)  # 200 characters with no place to end a sentence or clause
    await asyncio.sleep(0.2)
    assert len(fake.opened) == 2 and fake.live == 2  # the first is still being spoken
    await utt.cancel()
    assert fake.live == 0


async def test_flush_sends_the_buffer_without_ending():
    fake, sink = FakeUpstreams(), Sink()
    utt = make(fake, sink, segmenter=SegmenterConfig(min_chars=50, max_wait_s=10))
    utt.append("no boundary yet")
    utt.flush()
    await asyncio.sleep(0.05)
    assert fake.opened == ["no boundary yet"] and not utt.finished
    utt.append(" more")
    utt.end()
    await asyncio.wait_for(utt.wait(), 5)
    assert fake.opened == ["no boundary yet", "more"]
    assert isinstance(sink.terminals[0], Done)


async def test_a_failing_segment_ends_the_utterance_with_its_error_and_closes_the_rest():
    fake, sink = FakeUpstreams(chunks=3, fail_on="Two"), Sink()
    utt = make(fake, sink)
    utt.append("One here. Two here. Three here. Four here. ")
    utt.end()
    await asyncio.wait_for(utt.wait(), 5)
    assert sink.terminals == [Failed(p.ErrorCode.ENGINE_ERROR, "engine failed", True)]
    assert sink.events[-1][0] == "end"
    assert sink.tags == [(0, 0), (0, 1), (0, 2), (1, 0)]  # what came before the failure
    assert fake.live == 0


async def test_an_empty_utterance_is_done_without_any_upstream():
    fake, sink = FakeUpstreams(), Sink()
    utt = make(fake, sink)
    utt.append("   ")
    utt.end()
    await asyncio.wait_for(utt.wait(), 5)
    assert sink.terminals == [Done({"segments": 0, "audio_bytes": 0})] and fake.opened == []


async def test_text_after_end_is_refused_and_too_much_text_fails():
    fake, sink = FakeUpstreams(), Sink()
    utt = make(fake, sink, max_chars=20)
    utt.append("0123456789")
    utt.append("0123456789 and more")
    await asyncio.wait_for(utt.wait(), 5)
    assert [type(t) for t in sink.terminals] == [Failed]
    assert sink.terminals[0].code == p.ErrorCode.TEXT_TOO_LONG
    with pytest.raises(UtteranceClosed):
        utt.append("x")
    assert fake.live == 0


async def test_text_written_faster_than_the_wait_is_cut_to_the_segment_limit_not_refused():
    """Words with no sentence end, arriving faster than the maximum wait (a text that was
    already written, sent in the largest appends allowed): the buffer is cut at its last word
    boundary within the segment limit; only text with no place to cut at all is refused."""
    fake, sink = FakeUpstreams(chunks=1), Sink()
    utt = make(fake, sink, segmenter=SegmenterConfig(), max_segment_chars=100)
    words = "and then the agent went on talking with no full stop at all " * 6
    for i in range(0, len(words), 50):
        utt.append(words[i:i + 50])
    utt.end()
    await asyncio.wait_for(utt.wait(), 5)
    assert [type(t) for t in sink.terminals] == [Done]
    assert "".join(utt.segments) == words
    assert all(len(s) <= 100 for s in utt.segments)
    assert [s.strip() for s in utt.segments] == fake.opened
    fake, sink = FakeUpstreams(chunks=1), Sink()
    utt = make(fake, sink, segmenter=SegmenterConfig(), max_segment_chars=100)
    utt.append("x" * 60)
    utt.append("y" * 60)
    await asyncio.wait_for(utt.wait(), 5)
    assert [t.code for t in sink.terminals] == [p.ErrorCode.TEXT_TOO_LONG]
    assert fake.opened == []


async def test_cancel_mid_way_aborts_every_upstream_within_100ms():
    fake, sink = FakeUpstreams(chunks=1000, chunk_delay=0.005), Sink()
    utt = make(fake, sink, lookahead=2)
    utt.append("One here. Two here. Three here. Four here. Five")
    await asyncio.sleep(0.05)
    assert fake.live == 3
    t0 = time.monotonic()
    await utt.cancel()
    assert time.monotonic() - t0 < 0.1
    assert fake.live == 0
    assert sink.terminals == [Cancelled()] and sink.events[-1][0] == "end"
    n = len(sink.events)
    await utt.cancel()
    await asyncio.sleep(0.03)
    assert len(sink.events) == n


async def test_cancel_closes_upstreams_even_when_a_reader_swallows_the_cancellation():
    fake, sink = FakeUpstreams(chunks=1000, chunk_delay=0.005, swallow_cancel=True), Sink()
    utt = make(fake, sink)
    utt.append("One here. Two here. Three")
    await asyncio.sleep(0.05)
    assert fake.live == 2
    t0 = time.monotonic()
    await asyncio.wait_for(utt.cancel(), 2)
    assert time.monotonic() - t0 < 0.1 and fake.live == 0


async def test_a_client_that_is_gone_cancels_the_utterance():
    fake, sink = FakeUpstreams(chunks=100), Sink()

    async def gone(pcm: bytes) -> bool:
        return False

    utt = TextUtterance(fake, gone, sink.end, segmenter=FAST)
    utt.start()
    utt.append("Hello there friend. ")
    await asyncio.wait_for(utt.wait(), 5)
    assert sink.terminals == [Cancelled()] and fake.live == 0


# --- speculative start ------------------------------------------------------------------------
async def test_a_sentence_end_opens_its_upstream_before_the_next_token_confirms_it():
    fake, sink = FakeUpstreams(chunks=2), Sink()
    utt = make(fake, sink, segmenter=SegmenterConfig(max_wait_s=10))
    utt.append("Sure, I can help with that.")
    await asyncio.sleep(0.03)
    assert fake.opened == ["Sure, I can help with that."]  # open, but not confirmed ...
    assert sink.tags == []  # ... so none of its audio is relayed yet
    utt.append(" The meeting is at three.")
    await asyncio.sleep(0.03)
    assert sink.tags == [(0, 0), (0, 1)] and utt.segments == ["Sure, I can help with that. "]
    utt.end()
    await asyncio.wait_for(utt.wait(), 5)
    assert fake.opened == [s.strip() for s in utt.segments] == [
        "Sure, I can help with that.", "The meeting is at three."]  # the end confirmed it
    assert sink.tags == [(0, 0), (0, 1), (1, 0), (1, 1)] and fake.live == 0
    assert isinstance(sink.terminals[0], Done)


async def test_a_refuted_sentence_end_aborts_its_upstream_and_relays_none_of_it():
    fake, sink = FakeUpstreams(chunks=1000, chunk_delay=0.005), Sink()
    utt = make(fake, sink, segmenter=SegmenterConfig(max_wait_s=10))
    utt.append("The address is example.")
    await asyncio.sleep(0.03)
    assert fake.live == 1
    utt.append("com")  # a URL, not a sentence end
    await asyncio.sleep(0.03)
    assert fake.live == 0 and fake.closed == 1 and sink.tags == []
    utt.append(" for now.")
    utt.flush()  # a flush confirms what it sends, like the end
    await asyncio.sleep(0.03)
    assert utt.segments == ["The address is example.com for now."]
    assert fake.opened[-1] == "The address is example.com for now." and fake.live == 1
    assert {t for t, _ in sink.text_tags} == {"The address is example.com for now."}
    await utt.cancel()
    assert fake.live == 0 and sink.terminals == [Cancelled()]


async def test_cancel_aborts_a_speculative_upstream_too():
    fake, sink = FakeUpstreams(chunks=1000, chunk_delay=0.005, swallow_cancel=True), Sink()
    utt = make(fake, sink, segmenter=SegmenterConfig(max_wait_s=10))
    utt.append("Sure, I can help with that.")
    await asyncio.sleep(0.03)
    assert fake.live == 1
    t0 = time.monotonic()
    await utt.cancel()
    assert time.monotonic() - t0 < 0.1 and fake.live == 0 and sink.tags == []


# --- random interleavings ---------------------------------------------------------------------
OPS = st.lists(st.one_of(
    st.tuples(st.just("append"), st.sampled_from(
        ["Hello", " there", ", friend.", " How are", " you? ", "Dr. Who", " paid 1,000.50.",
         " See https://x.io/a.b ", "\n", " yes"])),
    st.tuples(st.just("flush"), st.none()),
    st.tuples(st.just("end"), st.none()),
    st.tuples(st.just("cancel"), st.none()),
    st.tuples(st.just("interrupt"), st.none()),
    st.tuples(st.just("sleep"), st.sampled_from([0, 0.001, 0.005, 0.02])),
), max_size=25)


async def _session(ops, fake: FakeUpstreams):
    """A session as the WebSocket drives it: `interrupt` cancels the utterance and opens a
    new one; text after `end` or a terminal is refused, as the router refuses it."""
    utterances: list[tuple[TextUtterance, Sink]] = []

    def new():
        sink = Sink()
        utterances.append((make(fake, sink), sink))

    new()
    for op, arg in ops:
        utt = utterances[-1][0]
        if op == "sleep":
            await asyncio.sleep(arg)
        elif op in ("cancel", "interrupt"):
            await utt.cancel()
            assert fake.live == 0  # nothing of it (or of an earlier one) is left open
            live_others = [u for u, _ in utterances[:-1] if not u.finished]
            assert not live_others
            if op == "interrupt":
                new()
        else:
            try:
                getattr(utt, op)(*([arg] if arg is not None else []))
            except UtteranceClosed:
                assert utt.finished or op in ("append", "flush", "end")
    last = utterances[-1][0]
    if not last.finished:
        try:
            last.end()
        except UtteranceClosed:
            pass
    for utt, _ in utterances:
        await asyncio.wait_for(utt.wait(), 10)
    return utterances


@settings(max_examples=60, deadline=None)
@given(ops=OPS)
def test_random_interleavings_keep_order_and_exactly_one_terminal(ops):
    fake = FakeUpstreams(chunks=3, chunk_delay=0.001, open_delay=0.001)
    utterances = asyncio.run(_session(ops, fake))
    assert fake.live == 0
    for utt, sink in utterances:
        assert len(sink.terminals) == 1
        assert sink.events[-1][0] == "end"
        tags = sink.text_tags
        # Audio comes segment by segment, each segment's chunks in order, with no gap.
        expected = [(s.strip(), i) for s in utt.segments for i in range(fake.chunks)]
        assert tags == expected[: len(tags)]
        if isinstance(sink.terminals[0], Done):
            assert tags == expected
