"""Cut text that arrives in pieces (an LLM writing) into segments worth synthesising.

Sentence boundaries come from `sentencex` (Wikimedia's maintained rule-based segmenter: it knows
abbreviations, decimals and URLs across languages); this module adds what a streaming TTS needs
on top of it:

* cuts only where the text has whitespace (or right after the full-width punctuation of
  Chinese or Japanese, which puts no space after it), so a word, a number (`1,000.50`) or a
  URL is never split, and never right after an abbreviation from `ABBREVIATIONS` (`Dr.`...);
* a sentence is final only once text after it has arrived (the last one may still grow);
* a minimum size, so the first audio is not one word;
* clause boundaries (`,` `;` `:` dashes) for the first segment, and for any later one that has
  grown past `long_chars` without a sentence end;
* a maximum wait: text older than `max_wait_s` goes out at its last safe word boundary, so a
  slow writer is still heard.

Segments keep their whitespace: concatenating every segment returned gives exactly the text
appended. The clock is passed in (`now`), so the rules are plain functions of their input.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

import sentencex

# Tokens after which a cut never happens: they are followed by more of the same sentence.
ABBREVIATIONS = frozenset(
    a.lower() for a in (
        "Mr.", "Mrs.", "Ms.", "Dr.", "Prof.", "Sr.", "Jr.", "St.", "Mt.", "Gen.", "Col.",
        "Capt.", "Lt.", "Sgt.", "Rev.", "Hon.", "Gov.", "Sen.", "Rep.", "Pres.", "e.g.",
        "i.e.", "vs.", "cf.", "approx.", "no.", "nos.", "vol.", "fig.", "p.", "pp.", "ca.",
        "U.S.", "U.K.", "a.m.", "p.m.", "Inc.", "Ltd.", "Co.", "Corp.", "Jan.", "Feb.",
        "Mar.", "Apr.", "Jun.", "Jul.", "Aug.", "Sep.", "Sept.", "Oct.", "Nov.", "Dec.",
    )
)
# Full-width punctuation of scripts written without spaces (Chinese, Japanese): a sentence or
# clause there ends with no whitespace after it, so a cut may follow it directly.
_WIDE_SENTENCE = "\u3002\uff01\uff1f"  # 。！？
_WIDE_CLAUSE = "\uff0c\u3001\uff1b\uff1a"  # ，、；：
_WIDE_CLOSERS = "\u300d\u300f\uff09\u3011\u300b\u3009\u201d\u2019"  # 」』）】》〉”’
_CLAUSE_END = re.compile(rf"[,;:{_WIDE_CLAUSE}]['\"){_WIDE_CLOSERS}\]]*$"
                         r"|^[\u2013\u2014-]+$|[\u2013\u2014]$")
_SENTENCE_END = re.compile(rf"[.!?\u2026{_WIDE_SENTENCE}]['\")\]{_WIDE_CLOSERS}]*$")
# A cut point is the end of a whitespace run that follows text (and holds no no-break space:
# `10 000`, `10 km`), or the end of full-width punctuation that more text follows.
_NO_BREAK = "\u00a0\u2007\u202f\u2060"
_CUT = re.compile(rf"\S[^\S{_NO_BREAK}]++(?![{_NO_BREAK}])"
                  rf"|[{_WIDE_SENTENCE}{_WIDE_CLAUSE}][{_WIDE_CLOSERS}]*(?=\S)")
_LEADING_QUOTES = "\"'([{\u201c\u2018"


@dataclass(frozen=True)
class SegmenterConfig:
    language: str = "en"
    min_chars: int = 12  # a segment shorter than this waits for more (unless forced)
    long_chars: int = 160  # past this, a later segment may end at a clause boundary too
    max_wait_s: float | None = 0.5  # the oldest unsent text waits at most this long
    sentences: bool = True  # cut at sentence ends (False: only flushes cut)
    clauses: str = "first"  # clause cuts: "first" segment (and long ones), "always", "never"


# vLLM-Omni's `split_granularity` values, as segmenter configurations.
GRANULARITIES = {
    "sentence": SegmenterConfig(clauses="never"),
    "clause": SegmenterConfig(clauses="always"),
    "none": SegmenterConfig(sentences=False, clauses="never", max_wait_s=None),
}


_TOKEN_TAIL = 32  # how much of a token its verdicts read: abbreviations and endings are short


def _token_before(text: str, cut: int) -> str:
    """The whitespace-free token that ends right before the whitespace ending at `cut`. Of a
    longer token (text written without spaces), "\0" and its last `_TOKEN_TAIL` characters:
    enough to judge its ending, never an abbreviation, and no longer to read at every cut."""
    end = cut
    while end > 0 and text[end - 1].isspace():
        end -= 1
        if cut - end > _TOKEN_TAIL:  # a long run of whitespace: let `str` find its start
            end = len(text[:cut].rstrip())
            break
    start = max(0, end - _TOKEN_TAIL - 1)
    token = text[start:end].rsplit(None, 1)[-1] if end > start else ""
    return "\0" + token[1:] if start and len(token) > _TOKEN_TAIL else token


def safe_cuts(text: str, start: int = 0) -> list[int]:
    """Every offset where `text` may be cut: after whitespace that follows a word which is not
    an abbreviation from the list, or after full-width punctuation that text follows. Numbers
    and URLs contain neither, so no cut splits one. `start`: only cuts of matches that begin
    there or later (see `_settle_point`)."""
    cuts = []
    for m in _CUT.finditer(text, start):
        cut = m.end()
        token = _token_before(text, cut).lstrip(_LEADING_QUOTES).lower()
        if token in ABBREVIATIONS:
            continue
        cuts.append(cut)
    return cuts


def sentence_cuts(text: str, language: str = "en") -> set[int]:
    """Offsets where `sentencex` ends a sentence (its segments keep their trailing whitespace)."""
    cuts, pos = set(), 0
    for sentence in sentencex.segment(language, text):
        found = text.find(sentence, pos)
        if found < 0:  # the library normalised something: stop trusting offsets past here
            break
        pos = found + len(sentence)
        cuts.add(pos)
    return cuts


def is_clause_cut(text: str, cut: int) -> bool:
    return bool(_CLAUSE_END.search(_token_before(text, cut)))


def _holds(sorted_values: list[int], value: int) -> bool:
    i = bisect.bisect_left(sorted_values, value)
    return i < len(sorted_values) and sorted_values[i] == value


def _settle_point(text: str) -> int:
    """Where the cuts that appending to `text` may still move or add begin. Before it, every
    cut match ends at it at the latest and has seen the character after it (a cut at the very
    end may still grow its whitespace; full-width punctuation at the end, with its closing
    quotes, awaits the text after it)."""
    body = text.rstrip()
    head = body.rstrip(_WIDE_CLOSERS)
    if head and len(head) < len(body) and head[-1] in _WIDE_SENTENCE + _WIDE_CLAUSE:
        return len(head) - 1
    return max(0, len(body) - 1)


class Segmenter:
    """One utterance's pending text. `append`, `poll` and `flush` return the segments that are
    ready, in order; `due()` says when `poll` may next have something to return.

    With `max_chars`, pending text longer than that is cut at once at its best boundary within
    it (as the maximum wait would cut it), so no segment is longer: text written faster than
    the wait is not held until it is too long to synthesise. Only text with no place to cut
    in its first `max_chars` stays longer (the caller refuses it)."""

    def __init__(self, config: SegmenterConfig | None = None, max_chars: int | None = None):
        self.config = config or SegmenterConfig()
        self.max_chars = max_chars
        self._pending = ""
        self._since: float | None = None  # when the oldest unsent non-blank text arrived
        self._emitted = 0  # segments returned so far
        # The pending text's cuts that no appended text can change, found once rather than at
        # every append (one-character appends would otherwise cost the square of the length).
        self._settled: list[int] = []
        self._settled_clauses: list[int] = []  # those of them that end a clause
        self._scan_from = 0  # where the cuts that may still change begin

    @property
    def pending(self) -> str:
        return self._pending

    def append(self, text: str, now: float) -> list[str]:
        if not text:
            return []
        self._pending += text
        if self._since is None and self._pending.strip():
            self._since = now
        return self._cut(now, forced=False)

    def poll(self, now: float) -> list[str]:
        """Segments due because the oldest pending text has waited `max_wait_s`."""
        return self._cut(now, forced=self._overdue(now))

    def due(self) -> float | None:
        """The clock time at which `poll` may force a cut, or None if nothing waits."""
        if self._since is None or self.config.max_wait_s is None:
            return None
        return self._since + self.config.max_wait_s

    def tentative(self) -> str | None:
        """The pending text if it would go out whole as soon as whitespace follows it (it ends
        in a sentence or clause end that is a cut here), else None. A caller may start on it
        early; the next `append`, `flush` or `poll` says whether the cut is real."""
        text = self._pending
        if not text.strip() or text[-1].isspace():
            return None
        return text if self._next_cut(False, text + " ") == len(text) + 1 else None

    def flush(self) -> list[str]:
        """Everything pending, as one segment (a flush or the end of the utterance)."""
        out = [self._pending] if self._pending else []
        self._take(len(self._pending), now=None)
        if out:
            self._emitted += 1
        return out

    # --- internals ---------------------------------------------------------------------------
    def _overdue(self, now: float) -> bool:
        due = self.due()
        return due is not None and now >= due

    def _take(self, cut: int, now: float | None) -> str:
        segment, self._pending = self._pending[:cut], self._pending[cut:]
        # A token that now begins the text may read differently (an abbreviation): scan anew.
        self._settled, self._settled_clauses, self._scan_from = [], [], 0
        self._since = now if (now is not None and self._pending.strip()) else None
        return segment

    def _cut(self, now: float, forced: bool) -> list[str]:
        out: list[str] = []
        while self.max_chars is not None and len(self._pending) > self.max_chars:
            cuts = [c for c in safe_cuts(self._pending) if c <= self.max_chars]
            if not cuts:
                break
            out.append(self._take(self._best_cut(self._pending, cuts), now))
            self._emitted += 1
        while self._pending.strip():
            cut = self._next_cut(forced)
            if cut is None:
                break
            out.append(self._take(cut, now))
            self._emitted += 1
            forced = False  # one forced cut per poll; what remains waits its own turn
        return out

    def _settle(self) -> None:
        text = self._pending
        point = _settle_point(text)
        if point <= self._scan_from:
            return
        for cut in safe_cuts(text, self._scan_from):
            if cut > point:
                break
            self._settled.append(cut)
            if is_clause_cut(text, cut):
                self._settled_clauses.append(cut)
        self._scan_from = point

    def _next_cut(self, forced: bool, text: str | None = None) -> int | None:
        """The first cut the rules allow in the pending text (or in `text`, which extends it):
        the first long enough cut that ends a sentence, or a clause where clauses may end."""
        self._settle()
        text = self._pending if text is None else text
        cfg = self.config
        tail = safe_cuts(text, self._scan_from)
        cuts = self._settled + tail
        if not cuts or not (cfg.sentences or cfg.clauses != "never" or forced):
            return None
        sentences = sentence_cuts(text, cfg.language) if cfg.sentences or forced else set()
        # `sentencex` always ends its last segment at the end of the text; there, only a
        # token that ends in sentence punctuation ends a sentence (the rest may still grow).
        clauses = cfg.clauses == "always" or (cfg.clauses == "first" and (
            self._emitted == 0 or len(text.strip()) >= cfg.long_chars))
        first = next((c for c in cuts if len(text[:c].strip()) >= cfg.min_chars), None)
        if first is None:
            return self._best_cut(text, cuts, sentences) if forced else None
        found = []
        if cfg.sentences:
            found += [c for c in sorted(sentences) if c >= first and _holds(cuts, c)
                      and (c < len(text) or _SENTENCE_END.search(_token_before(text, c)))][:1]
        if clauses:
            i = bisect.bisect_left(self._settled_clauses, first)
            found += self._settled_clauses[i:i + 1] or [
                c for c in tail if c >= first and is_clause_cut(text, c)][:1]
        if found:
            return min(found)
        if forced:
            return self._best_cut(text, cuts, sentences)
        return None

    def _best_cut(self, text: str, cuts: list[int], sentences: set[int] | None = None) -> int:
        """The best of `cuts` there is: the last sentence or clause end of at least
        `min_chars`, else the last complete word."""
        if sentences is None:
            sentences = sentence_cuts(text, self.config.language)
        preferred = [c for c in cuts if len(text[:c].strip()) >= self.config.min_chars
                     and ((c in sentences and c < len(text)) or is_clause_cut(text, c))]
        return (preferred or cuts)[-1]
