"""The playground's streamed-text modes and its timeline, in headless Chromium against the local
stack (a real gateway and real workers): text sent word by word as an LLM writes it, and a Stop
in the middle."""

from __future__ import annotations

import pytest

from tests.browser.test_playground import (LONG, UTTERANCE_TIMEOUT_MS, browser, hook,  # noqa: F401
                                           page, wait_audible, wait_state)

pytestmark = [pytest.mark.browser, pytest.mark.engine, pytest.mark.timeout(900)]


def speak_streamed(pg, text: str, rate: int = 20) -> None:
    pg.select_option("#mode", "llm")
    pg.fill("#rate", str(rate))
    pg.fill("#text", text)
    pg.click("#speak")


@pytest.mark.parametrize("page", ["?max_tokens=56"], indirect=True)  # short segments
def test_llm_mode_draws_what_happened_and_no_underrun_that_did_not(page):
    speak_streamed(page, LONG, rate=40)
    wait_audible(page)
    wait_state(page, "idle")
    utt = hook(page, "utterances")[-1]
    tl = hook(page, "timeline")
    assert utt["result"] == "done"
    assert "".join(t["text"] for t in tl["texts"]) == LONG  # every word went out, in order
    assert [t["at"] for t in tl["texts"]] == sorted(t["at"] for t in tl["texts"])
    assert len(tl["segments"]) >= 2 and [s["index"] for s in tl["segments"]] == list(
        range(len(tl["segments"])))
    assert " ".join(s["text"] for s in tl["segments"]) == LONG
    chunks = tl["chunks"]
    assert len(chunks) == utt["chunks"] > 0
    assert tl["segments"][0]["at"] < chunks[0]["arrive"]
    # An underrun is drawn only where a chunk started after the previous one had ended, and
    # every real gap is drawn (the page's clock and the audio clock differ by some ms).
    gaps = {i: b["start"] - a["end"] for i, (a, b) in enumerate(zip(chunks, chunks[1:]), 1)}
    starts = {round(c["start"]): i for i, c in enumerate(chunks)}
    for u in tl["underruns"]:
        i = min(starts.items(), key=lambda kv: abs(kv[0] - (u["at"] + u["ms"])))[1]
        assert i > 0 and abs(gaps[i] - u["ms"]) < 20, (u, gaps.get(i))
    drawn_at = [u["at"] + u["ms"] for u in tl["underruns"]]
    for i, gap in gaps.items():
        if gap > 30:
            assert any(abs(chunks[i]["start"] - d) < 20 for d in drawn_at), (i, gap)
    assert all(c["start"] >= c["arrive"] - 1 for c in chunks)  # nothing plays before it arrives


def test_stop_in_llm_mode_silences_within_100ms(page):
    speak_streamed(page, LONG, rate=20)
    wait_audible(page)
    page.click("#stop")
    wait_state(page, "idle")
    page.wait_for_function("() => window.playground.lastSilenceMs !== null")
    assert hook(page, "lastSilenceMs") <= 100
    assert hook(page, "utterances")[-1]["result"] == "cancelled"
    sent = len(hook(page, "timeline")["texts"])
    page.wait_for_timeout(500)
    assert len(hook(page, "timeline")["texts"]) == sent  # the writer stopped with it
    assert hook(page, "level") < 1e-4 and hook(page, "activeSources") == 0
