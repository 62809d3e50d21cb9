"""The streaming text segmenter, called directly with an explicit clock."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from orpheus_gateway import segmenter as sg
from orpheus_gateway.segmenter import ABBREVIATIONS, GRANULARITIES, Segmenter, SegmenterConfig

WORDS = ["hello", "world", "the", "quick", "voice", "agent", "speaks", "Orpheus", "yes"]
NUMBERS = ["3.5", "1,000", "1,000.50", "$12.99", "2026", "10.0.1", "3,14"]
ABBRS = ["Dr.", "Mr.", "e.g.", "i.e.", "U.S.", "p.m.", "vs.", "Prof."]
URLS = ["https://example.com/a.b?x=1.", "http://x.io/path,with;marks", "www.orpheus.ai/v1.2/",
        "https://a.b/c?d=e&f=g."]
PUNCT = [".", ",", "!", "?", ";", ":", " \u2014", "..."]
SPACES = [" ", " ", " ", "  ", "\n", " \n\n"]


@st.composite
def texts(draw):
    """A text made of atoms, with the spans that must never be split."""
    out, protected = "", []
    for _ in range(draw(st.integers(1, 40))):
        kind = draw(st.sampled_from(["word", "word", "word", "number", "abbr", "url"]))
        atom = draw(st.sampled_from({"word": WORDS, "number": NUMBERS, "abbr": ABBRS,
                                     "url": URLS}[kind]))
        start = len(out)
        out += atom
        if kind in ("number", "url"):
            protected.append((start, len(out)))
        elif kind == "word" and draw(st.booleans()):
            out += draw(st.sampled_from(PUNCT))
        space = draw(st.sampled_from(SPACES))
        out += space
        if kind == "abbr":  # no cut between an abbreviation and the word after it
            protected.append((start, len(out) + 1))
    return out, protected


@st.composite
def feeds(draw, text):
    """`text` cut into pieces at random offsets, with random times, polls and flushes."""
    offsets = sorted(set(draw(st.lists(st.integers(0, len(text)), max_size=30))))
    bounds = [0, *offsets, len(text)]
    ops, t = [], 0.0
    for a, b in zip(bounds, bounds[1:]):
        t += draw(st.floats(0, 1.0))
        ops.append(("append", text[a:b], t))
        op = draw(st.sampled_from(["none", "none", "poll", "flush"]))
        if op != "none":
            ops.append((op, "", t))
    return ops


def run(ops, config=None, max_chars=None) -> list[str]:
    seg, out = Segmenter(config, max_chars=max_chars), []
    for op, text, t in ops:
        if op == "append":
            out += seg.append(text, t)
        elif op == "poll":
            out += seg.poll(t)
        else:
            out += seg.flush()
    return out + seg.flush()


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_segments_concatenate_to_the_input_and_never_split_protected_spans(data):
    text, protected = data.draw(texts())
    ops = data.draw(feeds(text))
    config = data.draw(st.sampled_from([None, *GRANULARITIES.values()]))
    max_chars = data.draw(st.sampled_from([None, 60]))  # longer text is cut at once
    flushes = {sum(len(x[1]) for x in ops[:i]) for i, x in enumerate(ops) if x[0] == "flush"}
    segments = run(ops, config, max_chars)
    assert "".join(segments) == text
    assert all(segments)
    pos = 0
    for s in segments[:-1]:
        pos += len(s)
        if pos in flushes:
            continue  # an explicit flush sends what there is, by definition
        for start, end in protected:
            if any(start < f < end for f in flushes):
                continue  # a flush already split it ("D" | "r. "): the rest is a new word
            assert not start < pos < end, (text[start:end], segments)
        assert text[pos - 1].isspace(), ("cut inside a word", segments)


class ReferenceSegmenter(Segmenter):
    """The rules as first written: every cut and every verdict found anew at each call. The
    segmenter keeps what appended text cannot change instead; it must cut exactly as this."""

    def _next_cut(self, forced, text=None):
        text = self._pending if text is None else text
        cfg = self.config
        cuts = sg.safe_cuts(text)
        if not cuts or not (cfg.sentences or cfg.clauses != "never" or forced):
            return None
        sentences = sg.sentence_cuts(text, cfg.language) if cfg.sentences or forced else set()
        clauses = cfg.clauses == "always" or (cfg.clauses == "first" and (
            self._emitted == 0 or len(text.strip()) >= cfg.long_chars))
        for cut in [c for c in cuts if len(text[:c].strip()) >= cfg.min_chars]:
            if cfg.sentences and cut in sentences and (cut < len(text) or sg._SENTENCE_END.search(
                    sg._token_before(text, cut))):
                return cut
            if clauses and sg.is_clause_cut(text, cut):
                return cut
        return self._best_cut(text, cuts, sentences) if forced else None


WIDE = ["\u3002", "\uff0c", "\u300d", "\u6587\u5b57", "\u3001"]


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_cuts_as_the_rules_first_written_however_the_text_arrives(data):
    text, _ = data.draw(texts())
    if data.draw(st.booleans()):  # text written without spaces, cut after full-width stops
        text += "".join(data.draw(st.lists(st.sampled_from(WIDE), max_size=12)))
    ops = data.draw(feeds(text))
    if data.draw(st.booleans()):  # one character at a time, as a token stream may
        ops = [("append", ch, t) for op, piece, t in ops for ch in piece] + \
            [op for op in ops if op[0] != "append"]
    config = data.draw(st.sampled_from([None, *GRANULARITIES.values(),
                                        SegmenterConfig(clauses="always", min_chars=1)]))
    max_chars = data.draw(st.sampled_from([None, 60]))
    fast, ref = Segmenter(config, max_chars=max_chars), ReferenceSegmenter(config, max_chars=max_chars)
    for op, piece, t in ops:
        if op == "append":
            assert fast.append(piece, t) == ref.append(piece, t)
        elif op == "poll":
            assert fast.poll(t) == ref.poll(t)
        else:
            assert fast.flush() == ref.flush()
        assert fast.tentative() == ref.tentative()
    assert fast.flush() == ref.flush()


def test_one_character_appends_cost_linear_time_not_quadratic():
    """4,000 one-character appends of text with no place to end a sentence: each used to scan
    and judge the whole pending text again (about 3 s of event loop here)."""
    text = ("word " * 800)[:4000]
    seg, ref = Segmenter(SegmenterConfig(max_wait_s=None)), ReferenceSegmenter(
        SegmenterConfig(max_wait_s=None))
    calls = {"fast": 0, "ref": 0}
    real = sg.is_clause_cut

    def counting(name):
        def judge(t, c):
            calls[name] += 1
            return real(t, c)
        return judge

    for name, s in (("fast", seg), ("ref", ref)):
        sg.is_clause_cut = counting(name)
        try:
            out = [x for ch in text for x in s.append(ch, 0.0)] + s.flush()
        finally:
            sg.is_clause_cut = real
        assert "".join(out) == text
    assert calls["fast"] <= 2 * len(text) < calls["ref"] // 100, calls


def test_whole_sentences_go_out_once_the_next_one_starts():
    seg = Segmenter()
    assert seg.append("Dr. Smith paid $1,000.50 at 3 p.m. today.", 0) == []
    assert seg.append(" Then", 0.1) == ["Dr. Smith paid $1,000.50 at 3 p.m. today. "]
    assert seg.pending == "Then"


def test_a_final_sentence_with_its_space_goes_out_at_once():
    seg = Segmenter()
    assert seg.append("The meeting is over now. ", 0) == ["The meeting is over now. "]


def test_first_segment_ends_at_a_clause_later_ones_wait_for_the_sentence():
    seg = Segmenter()
    assert seg.append("Well, to be honest with you, I", 0) == ["Well, to be honest with you, "]
    assert seg.append(" think, on balance, that we", 0.1) == []
    assert seg.append(" should go. Yes", 0.2) == ["I think, on balance, that we should go. "]


def test_a_short_sentence_waits_for_more_and_the_maximum_wait_sends_it():
    seg = Segmenter(SegmenterConfig(min_chars=12, max_wait_s=0.5))
    assert seg.append("Hi. ", 0) == []
    assert seg.due() == 0.5
    assert seg.poll(0.49) == []
    assert seg.poll(0.5) == ["Hi. "]
    assert seg.due() is None


def test_the_maximum_wait_cuts_at_the_last_whole_word_not_inside_one():
    seg = Segmenter(SegmenterConfig(max_wait_s=0.5))
    seg.append("a slow writer who never ends a sent", 0)
    assert seg.poll(0.6) == ["a slow writer who never ends a "]
    assert seg.pending == "sent"


def test_no_cut_after_an_abbreviation_even_when_forced():
    assert "dr." in ABBREVIATIONS
    seg = Segmenter(SegmenterConfig(max_wait_s=0.1))
    seg.append("Dr. ", 0)
    assert seg.poll(1.0) == []
    assert seg.flush() == ["Dr. "]


def test_granularities_of_the_omni_protocol():
    text = "Well, to be honest, I think so. And you, my friend? "
    later = "Fine. Yes, more text, with clauses, that goes on and on. "

    def cut(name):
        seg = Segmenter(GRANULARITIES[name])
        return seg.append(text, 0) + seg.append(later, 0) + seg.poll(100)

    assert cut("none") == []
    assert cut("sentence") == ["Well, to be honest, I think so. ", "And you, my friend? ",
                               "Fine. Yes, more text, with clauses, that goes on and on. "]
    # Clause ends too, each piece at least `min_chars` long.
    assert cut("clause") == ["Well, to be honest, ", "I think so. And you, ", "my friend? Fine. ",
                             "Yes, more text, ", "with clauses, ", "that goes on and on. "]


def test_tentative_is_the_text_a_following_space_would_cut_whole():
    seg = Segmenter()
    assert seg.append("Sure, I can help with that.", 0) == []
    assert seg.tentative() == "Sure, I can help with that."
    assert seg.append(" The", 0.03) == ["Sure, I can help with that. "]
    assert seg.tentative() is None  # "The" ends nothing
    for text in ("The site is example.", "Ask Dr.", "It costs 1,000."):
        seg = Segmenter()
        seg.append(text, 0)
        # a sentence end may still turn out to be a URL or a number ("1,000.50"): tentative;
        # a listed abbreviation never ends a sentence: not even tentative
        assert seg.tentative() == (text if text.endswith(("example.", "1,000.")) else None)
    seg = Segmenter()
    seg.append("Short.", 0)
    assert seg.tentative() is None  # under min_chars: a following space would not cut it


def test_text_written_without_spaces_is_cut_after_its_full_width_punctuation():
    """Chinese and Japanese put no space after a sentence: streamed character by character,
    their sentences still go out as they end (they were held until the end of the utterance,
    and past `max_text_chars` the utterance failed)."""
    text = "你好，我是你的语音助手。今天天气很好，我们去公园散步吧！好的，我们一会儿在公园门口见。"
    seg, out = Segmenter(), []
    for i, ch in enumerate(text):
        out += seg.append(ch, now=i * 0.01)
    assert out == ["你好，我是你的语音助手。", "今天天气很好，我们去公园散步吧！"]
    assert seg.tentative() == "好的，我们一会儿在公园门口见。"  # a speculative start works too
    assert seg.flush() == ["好的，我们一会儿在公园门口见。"]
    # The maximum wait cuts at the last clause end, not nowhere.
    seg.append("今天天气很好我们去公园散步吧，然后", now=0.0)
    assert seg.poll(now=1.0) == ["今天天气很好我们去公园散步吧，"]
    assert seg.pending == "然后"
    japanese = "こんにちは、今日はいい天気ですね。公園に行きましょう！"
    seg, out = Segmenter(), []
    for ch in japanese:
        out += seg.append(ch, now=0.0)
    assert "".join(out + seg.flush()) == japanese and out == ["こんにちは、今日はいい天気ですね。"]


def test_no_cut_at_a_no_break_space():
    """A no-break space says "do not break here": French digit groups (`10 000`, with a narrow
    no-break space) and `10 km` stay whole even when the maximum wait forces a cut."""
    for nbsp in ("\u00a0", "\u202f", "\u2007"):
        seg = Segmenter()
        seg.append(f"Le prix est de 10{nbsp}000", now=0.0)
        assert seg.poll(now=1.0) == ["Le prix est de "]
        assert seg.pending == f"10{nbsp}000"
