"""The incremental segmenter against the rules as first written (`ReferenceSegmenter`) on the
characters the cut rules single out, and the work one-character appends still cost."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orpheus_gateway import segmenter as sg
from orpheus_gateway.segmenter import GRANULARITIES, Segmenter, SegmenterConfig
from tests.gateway.test_segmenter import ReferenceSegmenter

# No-break spaces, full-width stops, commas and closing quotes, opening quotes, dashes,
# abbreviations, numbers: what decides where a cut may fall and whether it ends a clause.
ATOMS = ["a", "b", "x", "Dr.", "e.g.", "U.S.", "p.m.", "1.5", ".", ",", "!", "?", ";", ":",
         " ", " ", "  ", "\n", "\t", "\u00a0", "\u202f", "\u3002", "\uff0c", "\u3001", "\uff01",
         "\u300c", "\u300d", "\u201c", "\u201d", "\u2019", "\"", "'", "(", ")", "]", "\u2014",
         "-", "\u2026", "\u6587"]


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_cuts_as_the_rules_first_written_on_the_characters_that_decide_cuts(data):
    text = "".join(data.draw(st.lists(st.sampled_from(ATOMS), min_size=1, max_size=60)))
    if data.draw(st.booleans()):
        offsets = list(range(len(text) + 1))  # one character at a time
    else:
        offsets = sorted(set(data.draw(st.lists(st.integers(0, len(text)), max_size=20))))
    bounds = [0, *offsets, len(text)]
    config = data.draw(st.sampled_from([None, *GRANULARITIES.values(),
                                        SegmenterConfig(clauses="always", min_chars=1),
                                        SegmenterConfig(min_chars=0, clauses="always")]))
    max_chars = data.draw(st.sampled_from([None, 5, 10, 60]))
    fast = Segmenter(config, max_chars=max_chars)
    ref = ReferenceSegmenter(config, max_chars=max_chars)
    t, done = 0.0, []
    for a, b in zip(bounds, bounds[1:]):
        t += data.draw(st.floats(0, 1))
        done.append(("append", text[a:b], t))
        assert fast.append(text[a:b], t) == ref.append(text[a:b], t), done
        assert fast.tentative() == ref.tentative(), done
        op = data.draw(st.sampled_from(["none", "none", "poll", "flush"]))
        done.append((op, t))
        if op == "poll":
            assert fast.poll(t) == ref.poll(t), done
        elif op == "flush":
            assert fast.flush() == ref.flush(), done
        assert fast.tentative() == ref.tentative(), done
    assert fast.flush() == ref.flush(), done


def feed_one_character_at_a_time(seg: Segmenter, text: str, counted: str) -> int:
    """Feed `text` one character at a time; the characters `sg.<counted>` was handed (its
    text up to the cut, or the token it returned) in all."""
    handled = [0]
    real = getattr(sg, counted)

    def counting(*args):
        result = real(*args)
        handled[0] += len(result) if isinstance(result, str) else len(args[0])
        return result

    setattr(sg, counted, counting)
    try:
        out = [x for ch in text for x in seg.append(ch, 0.0)] + seg.flush()
    finally:
        setattr(sg, counted, real)
    assert "".join(out) == text
    return handled[0]


def test_one_character_appends_of_text_without_spaces_cost_linear_work():
    """Text written without spaces (Chinese, Japanese): each cut's token is all the text since
    the last space, and was read whole at every cut (8 million characters here)."""
    text = "\u6587\uff0c" * 2000  # full-width commas: a cut after each, never a space
    handled = feed_one_character_at_a_time(Segmenter(GRANULARITIES["none"]), text,
                                           "_token_before")
    assert handled <= 200 * len(text), handled


@pytest.mark.xfail(strict=True, reason=(
    "sentence_cuts (sentencex) still runs over the whole pending text at every append once "
    "it has a cut: 4,000 one-character appends hand it 8 million characters, whatever the "
    "script; with '\u6587\uff0c' text and granularity 'sentence' that is about 0.29 s of "
    "event loop per 4,000 characters (4x the commit's 0.07 s), growing with the square"))
def test_one_character_appends_hand_the_sentence_splitter_linear_text():
    text = ("word " * 800)[:4000]  # no sentence end: everything stays pending
    handled = feed_one_character_at_a_time(Segmenter(SegmenterConfig(max_wait_s=None)), text,
                                           "sentence_cuts")
    assert handled <= 20 * len(text), handled


def _full_token_before(text: str, cut: int) -> str:
    head = text[:cut].rstrip()
    return head.rsplit(None, 1)[-1] if head else ""


@settings(max_examples=300, deadline=None)
@given(text=st.lists(st.sampled_from(ATOMS + ["\u6587" * 40, "-" * 5, "\u300d" * 3]),
                     max_size=40).map("".join))
def test_a_token_read_by_its_tail_gets_the_verdicts_of_the_whole_token(text):
    for cut in sg.safe_cuts(text) + [len(text)]:
        whole, read = _full_token_before(text, cut), sg._token_before(text, cut)
        if len(whole) <= sg._TOKEN_TAIL:
            assert read == whole
        assert bool(sg._CLAUSE_END.search(read)) == bool(sg._CLAUSE_END.search(whole)) or \
            whole.strip("-\u2013\u2014") == "", (whole, read)  # a long run of dashes alone
        assert bool(sg._SENTENCE_END.search(read)) == bool(sg._SENTENCE_END.search(whole))
        assert (read.lower() in sg.ABBREVIATIONS) == (whole.lower() in sg.ABBREVIATIONS)
