"""The playground page in headless Chromium (Debian's, driven by Python playwright) against the
local stack: a real gateway and real workers, real WebSocket, real Web Audio.

The page exposes a read-only hook, `window.playground`, with its state, the number of audio
source nodes still scheduled or playing, the output level (an AnalyserNode on the master bus)
and, after a Stop, how long the output took to fall silent on the AudioContext's own clock.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.engine, pytest.mark.timeout(900)]

CHROMIUM = os.environ.get("ORPHEUS_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
SHORT = "Hello there."
LONG = ("Once upon a time, in a small village by the sea, there lived an old fisherman and his "
        "wife. Every day he went out to sea and every evening he came back with his nets full.")
UTTERANCE_TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        # `make test` (and so CI) installs it; a missing browser there is a failure, not a skip.
        pytest.fail(f"{CHROMIUM} missing: run `make browser` (scripts/install-browser.sh)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser, local_stack, request):
    query = getattr(request, "param", "")
    # what the browser's own key prompt (HTTP Basic) gives: it then sends the key everywhere
    context = browser.new_context(
        http_credentials={"username": "me", "password": local_stack.api_key})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.goto(f"{local_stack.url}/{query}")
    pg.wait_for_function("() => window.playground && window.playground.state === 'idle'")
    yield pg
    context.close()
    assert errors == [], errors


def speak(pg, text: str) -> None:
    pg.fill("#text", text)
    pg.click("#speak")


def wait_state(pg, state: str, timeout_ms: int = UTTERANCE_TIMEOUT_MS) -> None:
    pg.wait_for_function(f"() => window.playground.state === {state!r}", timeout=timeout_ms)


def wait_audible(pg, timeout_ms: int = UTTERANCE_TIMEOUT_MS) -> None:
    """Until audio is really coming out of the page's output bus."""
    pg.wait_for_function("() => window.playground.level > 0.001", timeout=timeout_ms,
                         polling=10)


def hook(pg, name: str):
    return pg.evaluate(f"() => window.playground.{name}")


def test_page_is_served_and_lists_voices(page, local_stack):
    assert page.title() == "Orpheus TTS playground"
    page.wait_for_function("() => document.querySelectorAll('#voice option').length > 1")
    voices = page.eval_on_selector_all("#voice option", "els => els.map(e => e.value)")
    assert len(voices) > 1


def test_without_the_key_the_browser_is_asked_for_it_and_gets_no_page(browser, local_stack):
    context = browser.new_context()  # no credentials: nothing to answer the prompt with
    try:
        from playwright.sync_api import Error as PlaywrightError

        pg = context.new_page()
        with pytest.raises(PlaywrightError, match="ERR_INVALID_AUTH_CREDENTIALS"):
            pg.goto(f"{local_stack.url}/")  # headless, the key prompt is dismissed
        response = context.request.get(f"{local_stack.url}/")
        assert response.status == 401
        assert response.headers["www-authenticate"].startswith("Basic ")
    finally:
        context.close()


def test_second_utterance_plays(page):
    speak(page, SHORT)
    wait_audible(page)
    wait_state(page, "idle")
    first = hook(page, "utterances")[-1]
    assert first["result"] == "done" and first["chunks"] > 0
    scheduled_after_first = hook(page, "scheduledTotal")

    speak(page, "And this is the second message.")
    wait_state(page, "speaking")
    wait_audible(page)  # message two is heard, not only received
    wait_state(page, "idle")
    second = hook(page, "utterances")[-1]
    assert second["result"] == "done" and second["chunks"] > 0
    assert hook(page, "scheduledTotal") == scheduled_after_first + second["chunks"]
    assert second["firstAudioMs"] is not None and second["rtf"] is not None
    row = page.inner_text(f"#row-{second['id']}")
    assert "done" in row and " ms" in row


def test_stop_silences_within_100ms_and_returns_to_idle(page):
    speak(page, LONG)
    wait_audible(page)
    page.click("#stop")
    # Stop silences at once; the UI leaves "speaking" only on the server's `cancelled`.
    wait_state(page, "idle")
    page.wait_for_function("() => window.playground.lastSilenceMs !== null")
    silent_ms = hook(page, "lastSilenceMs")
    print(f"silent {silent_ms:.1f} ms after stop")
    assert silent_ms <= 100
    assert hook(page, "activeSources") == 0
    utt = hook(page, "utterances")[-1]
    assert utt["result"] == "cancelled"
    assert "cancelled" in hook(page, "events")
    # and it stays silent: late audio of the stopped utterance is not played
    page.wait_for_timeout(300)
    assert hook(page, "level") < 1e-4 and hook(page, "activeSources") == 0


@pytest.mark.parametrize("page", ["?max_tokens=56"], indirect=True)  # short: 20 of them
def test_twenty_utterances_leave_no_source_scheduled(page):
    """Finish, stop and interrupt, in turn; at the end no source node is left behind."""
    for i in range(20):
        speak(page, f"Message number {i + 1}.")
        if i % 3 == 0:
            wait_state(page, "idle")  # runs to done
        elif i % 3 == 1:
            page.wait_for_function("() => window.playground.activeSources > 0",
                                   timeout=UTTERANCE_TIMEOUT_MS)
            page.evaluate("window.playground.stop()")  # it may just have finished: no click wait
            wait_state(page, "idle")
        else:
            page.wait_for_function("() => window.playground.activeSources > 0",
                                   timeout=UTTERANCE_TIMEOUT_MS)
            # the next iteration's Speak interrupts this one
    wait_state(page, "idle")
    page.wait_for_function("() => window.playground.activeSources === 0",
                           timeout=UTTERANCE_TIMEOUT_MS)
    utterances = hook(page, "utterances")
    assert len(utterances) == 20
    assert all(u["ended"] for u in utterances), utterances
    assert {u["result"] for u in utterances} <= {"done", "cancelled"}
    assert sum(u["result"] == "cancelled" for u in utterances) > 0  # stops and interrupts cut
    assert hook(page, "socketOpen")  # one socket, still healthy, for the whole session
