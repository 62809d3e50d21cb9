"""`OrpheusTTSService` driven by Pipecat's own pipeline (`pipecat.tests.utils.run_test`: a real
`Pipeline`, `PipelineWorker` and runner; no transport or media server) against a live gateway
and fake workers."""

from __future__ import annotations

import asyncio

from pipecat.frames.frames import (ErrorFrame, InterruptionFrame, LLMFullResponseEndFrame,
                                   LLMFullResponseStartFrame, LLMTextFrame, TTSAudioRawFrame,
                                   TTSSpeakFrame, TTSStartedFrame, TTSStoppedFrame)
from pipecat.tests.utils import SleepFrame, run_test

from orpheus_tts import protocol as p
from orpheus_tts.integrations.pipecat import OrpheusTTSService
from tests.gateway.conftest import API_KEY, gateway_server  # noqa: F401 - a fixture
from tests.support.fake_server import Behaviour

TOKENS = ["Hello", " there", ", my", " friend.", " The", " weather", " is", " fine", " today,",
          " and", " the", " sun", " is", " out."]


def _llm_turn(tokens, pause: float = 0.01):
    frames = [LLMFullResponseStartFrame()]
    for token in tokens:
        frames += [LLMTextFrame(token), SleepFrame(sleep=pause)]
    return frames + [LLMFullResponseEndFrame()]


async def test_text_in_pieces_comes_out_as_24khz_audio_frames(fake_server, gateway_server):  # noqa: F811
    srv = fake_server(chunks=3, chunk_delay_ms=5)
    gw = gateway_server([srv.url])
    gw.wait_polled()
    tts = OrpheusTTSService(base_url=gw.url, api_key=API_KEY, voice="tara")
    down, _ = await run_test(tts, frames_to_send=_llm_turn(TOKENS) + [SleepFrame(sleep=0.5)])
    audio = [f for f in down if isinstance(f, TTSAudioRawFrame)]
    segments = [r.body["text"] for r in srv.stream_requests]
    assert len(segments) >= 2 and " ".join(segments) == "".join(TOKENS)
    assert all(f.sample_rate == p.SAMPLE_RATE and f.num_channels == 1 for f in audio)
    assert b"".join(f.audio for f in audio) == srv.expected_pcm(3) * len(segments)
    kinds = [type(f) for f in down if isinstance(f, (TTSStartedFrame, TTSAudioRawFrame,
                                                     TTSStoppedFrame))]
    assert kinds[0] is TTSStartedFrame and kinds[-1] is TTSStoppedFrame
    context_ids = {f.context_id for f in audio}
    assert len(context_ids) == 1  # one turn, one audio context, one utterance
    assert srv.wait_until(lambda: srv.open_streams == 0)


async def test_a_speak_frame_is_one_whole_utterance(fake_server, gateway_server):  # noqa: F811
    srv = fake_server(chunks=3)
    gw = gateway_server([srv.url])
    gw.wait_polled()
    tts = OrpheusTTSService(base_url=gw.url, api_key=API_KEY)
    down, _ = await run_test(tts, frames_to_send=[
        TTSSpeakFrame("Hello there, how are you today?"), SleepFrame(sleep=0.5)])
    audio = b"".join(f.audio for f in down if isinstance(f, TTSAudioRawFrame))
    assert audio == srv.expected_pcm(3) * len(srv.stream_requests)
    assert isinstance([f for f in down if isinstance(f, (TTSAudioRawFrame, TTSStoppedFrame))][-1],
                      TTSStoppedFrame)


async def test_an_interruption_stops_the_audio_and_aborts_the_engine_request(
        fake_server, gateway_server):  # noqa: F811
    srv = fake_server(chunks=500, chunk_delay_ms=10)
    gw = gateway_server([srv.url])
    gw.wait_polled()
    tts = OrpheusTTSService(base_url=gw.url, api_key=API_KEY)
    frames = [LLMFullResponseStartFrame(), LLMTextFrame("A sentence that takes a while to say."),
              LLMTextFrame(" And another one after it. "), SleepFrame(sleep=0.6),
              InterruptionFrame(), SleepFrame(sleep=0.5)]
    down, _ = await run_test(tts, frames_to_send=frames)
    cut = next(i for i, f in enumerate(down) if isinstance(f, InterruptionFrame))
    assert any(isinstance(f, TTSAudioRawFrame) for f in down[:cut])  # it was speaking
    assert not any(isinstance(f, TTSAudioRawFrame) for f in down[cut:])
    assert srv.wait_until(lambda: srv.open_streams == 0 and srv.cancelled_streams >= 1)
    assert srv.completed_streams == 0


async def test_a_failed_turn_does_not_hold_back_the_next_turns_audio(
        fake_server, gateway_server):  # noqa: F811
    """A turn whose utterance fails ends its audio context at once: the next turn is heard
    without waiting out the service's stop-frame timeout (30 s) on the dead context."""
    srv = fake_server(chunks=3, chunk_delay_ms=5)
    srv.script(Behaviour.error(p.ErrorCode.ENGINE_ERROR, after=1))
    gw = gateway_server([srv.url])
    gw.wait_polled()
    tts = OrpheusTTSService(base_url=gw.url, api_key=API_KEY, voice="tara")
    frames = (_llm_turn(["This first reply fails."]) + [SleepFrame(sleep=0.5)]
              + _llm_turn(["The second reply is heard."]) + [SleepFrame(sleep=1.0)])
    down, up = await asyncio.wait_for(run_test(tts, frames_to_send=frames), 10)
    assert any(isinstance(f, ErrorFrame) for f in up)  # the failure was reported
    audio = [f for f in down if isinstance(f, TTSAudioRawFrame)]
    contexts = list(dict.fromkeys(f.context_id for f in audio))
    assert len(contexts) == 2  # both turns were heard
    assert b"".join(f.audio for f in audio if f.context_id == contexts[1]) == srv.expected_pcm(3)
    assert srv.wait_until(lambda: srv.open_streams == 0)


async def test_the_rest_of_a_failed_turn_is_not_spoken_as_a_new_utterance(
        fake_server, gateway_server):  # noqa: F811
    """The LLM goes on writing a turn whose utterance has failed: its later tokens are
    dropped, not opened as a fresh utterance that starts speaking mid-reply."""
    srv = fake_server(chunks=3, chunk_delay_ms=5)
    srv.script(Behaviour.error(p.ErrorCode.ENGINE_ERROR, after=1))
    gw = gateway_server([srv.url])
    gw.wait_polled()
    tts = OrpheusTTSService(base_url=gw.url, api_key=API_KEY, voice="tara")
    frames = ([LLMFullResponseStartFrame(), LLMTextFrame("This first reply fails. "),
               SleepFrame(sleep=0.5), LLMTextFrame("The rest of it, "),
               LLMTextFrame("which goes on."), LLMFullResponseEndFrame(), SleepFrame(sleep=0.5)]
              + _llm_turn(["The second reply is heard."]) + [SleepFrame(sleep=1.0)])
    down, _ = await asyncio.wait_for(run_test(tts, frames_to_send=frames), 10)
    assert [r.body["text"] for r in srv.stream_requests] == [
        "This first reply fails.", "The second reply is heard."]
    audio = [f for f in down if isinstance(f, TTSAudioRawFrame)]
    last = audio[-1].context_id
    assert b"".join(f.audio for f in audio if f.context_id == last) == srv.expected_pcm(3)
    assert srv.wait_until(lambda: srv.open_streams == 0)


async def test_a_turn_after_the_server_closed_the_idle_socket_is_heard(
        fake_server, gateway_server):  # noqa: F811
    """Nothing to say for longer than the server's idle timeout (the user talks for a while):
    the server closes the socket, and the next turn opens a new one instead of failing (as
    every later turn of the conversation did)."""
    srv = fake_server(chunks=3, chunk_delay_ms=5)
    gw = gateway_server([srv.url], ws_idle_timeout_s=0.5)
    gw.wait_polled()
    tts = OrpheusTTSService(base_url=gw.url, api_key=API_KEY, voice="tara")
    frames = (_llm_turn(["The first reply."]) + [SleepFrame(sleep=1.5)]
              + _llm_turn(["The second reply is heard."]) + [SleepFrame(sleep=1.0)])
    down, up = await asyncio.wait_for(run_test(tts, frames_to_send=frames), 10)
    assert not [f for f in up if isinstance(f, ErrorFrame)]
    assert [r.body["text"] for r in srv.stream_requests] == [
        "The first reply.", "The second reply is heard."]
    audio = [f for f in down if isinstance(f, TTSAudioRawFrame)]
    assert len({f.context_id for f in audio}) == 2
    assert b"".join(f.audio for f in audio) == srv.expected_pcm(3) * 2
