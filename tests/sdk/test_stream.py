"""One endpoint: what `OrpheusTTS.stream` sends, yields and raises, against a real fake server."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from orpheus_tts.errors import (
    DeadlineExceededError,
    HTTPStatusError,
    IncompleteStreamError,
    OrpheusError,
    StreamError,
)
from orpheus_tts.sdk import OrpheusTTS
from tests.support.fake_server import Behaviour


async def collect(stream) -> tuple[list[bytes], BaseException | None]:
    chunks: list[bytes] = []
    try:
        async for chunk in stream:
            chunks.append(chunk)
    except BaseException as exc:  # noqa: BLE001 - the test inspects it
        return chunks, exc
    return chunks, None


async def test_stream_yields_the_decoded_pcm_in_order(fake_server):
    srv = fake_server(chunks=4, chunk_samples=240)
    async with OrpheusTTS([srv.url]) as tts:
        stream = tts.stream("Hello there.", voice="tara")
        chunks = [c async for c in stream]
    assert b"".join(chunks) == srv.expected_pcm(4, 240)
    assert [len(c) for c in chunks] == [480] * 4
    assert stream.info.endpoint == srv.url
    assert stream.info.eos is not None and stream.info.eos.chunks == 4
    assert stream.info.ttfa_ms is not None and stream.info.ttfa_ms >= 0
    assert stream.info.request_id  # the server's generated X-Request-ID
    assert srv.stream_requests[0].body == {"text": "Hello there.", "voice": "tara"}


async def test_params_pass_through_and_request_id_is_echoed(fake_server):
    srv = fake_server()
    async with OrpheusTTS(srv.url) as tts:
        stream = tts.stream("Hi.", temperature=0.4, top_p=0.9, top_k=0, max_tokens=1536,
                            request_id="req-42")
        await collect(stream)
    assert srv.stream_requests[0].body == {
        "text": "Hi.", "temperature": 0.4, "top_p": 0.9, "top_k": 0, "max_tokens": 1536,
        "request_id": "req-42",
    }
    assert stream.info.request_id == "req-42"


async def test_auth_header_is_bearer_key_and_absent_without_key(fake_server):
    srv = fake_server()
    async with OrpheusTTS([srv.url], api_key="sekret") as tts:
        await tts.synthesize("a")
    async with OrpheusTTS([srv.url]) as tts:
        await tts.synthesize("b")
    with_key, without_key = srv.stream_requests
    assert with_key.headers["authorization"] == "Bearer sekret"
    assert "authorization" not in without_key.headers


async def test_unknown_param_is_refused_by_the_server_naming_it(fake_server):
    srv = fake_server()
    async with OrpheusTTS([srv.url]) as tts:
        with pytest.raises(httpx.HTTPStatusError) as info:
            await tts.synthesize("Hi.", speed=1.5)
    exc = info.value
    assert isinstance(exc, HTTPStatusError)
    assert exc.response.status_code == 400
    assert exc.code == "unknown_parameter" and exc.param == "speed"
    assert "speed" in str(exc)


async def test_http_error_carries_openai_body_and_retry_after(fake_server):
    srv = fake_server()
    srv.script(
        Behaviour.http_error(401, "invalid_api_key", message="Invalid API key."),
        Behaviour.http_error(429, "rate_limit_exceeded", message="Slow down.", retry_after_s=3),
    )
    async with OrpheusTTS([srv.url], api_key="wrong") as tts:
        with pytest.raises(httpx.HTTPError) as first:  # the guide's recommended `except`
            await tts.synthesize("Hi.")
        with pytest.raises(HTTPStatusError) as second:
            await tts.synthesize("Hi.")
    assert isinstance(first.value, httpx.HTTPStatusError)
    assert first.value.response.status_code == 401
    assert first.value.response.json()["error"]["code"] == "invalid_api_key"
    assert first.value.error["message"] == "Invalid API key."
    assert second.value.status_code == 429 and second.value.retry_after_s == 3.0


async def test_error_frame_raises_typed_error_with_code_and_retryable(fake_server):
    srv = fake_server()
    srv.script(
        Behaviour.error("engine_error", after=2, message="engine died"),
        Behaviour.error("invalid_request", after=0, retryable=False, message="nope"),
    )
    async with OrpheusTTS([srv.url], hedge_ttfb_ms=None) as tts:
        chunks, exc = await collect(tts.stream("Hi."))
        assert len(chunks) == 2  # audio before the error was delivered, then the error
        assert isinstance(exc, StreamError) and isinstance(exc, OrpheusError)
        assert (exc.code, exc.retryable, exc.message) == ("engine_error", True, "engine died")
        assert exc.endpoint == srv.url

        chunks, exc = await collect(tts.stream("Hi."))
        assert chunks == [] and isinstance(exc, StreamError)
        assert (exc.code, exc.retryable) == ("invalid_request", False)


async def test_stream_without_terminal_frame_raises_not_truncates(fake_server):
    srv = fake_server()
    srv.script(Behaviour.eof(after=2), Behaviour.eof(after=0))
    async with OrpheusTTS([srv.url]) as tts:
        chunks, exc = await collect(tts.stream("Hi."))
        assert len(chunks) == 2
        assert isinstance(exc, IncompleteStreamError)
        assert isinstance(exc, httpx.RemoteProtocolError)  # caught by `except httpx.HTTPError`
        with pytest.raises(IncompleteStreamError):
            await tts.synthesize("Hi.")


async def test_dropped_connection_raises_httpx_protocol_error(fake_server):
    srv = fake_server()
    srv.script(Behaviour.drop(after=1))
    async with OrpheusTTS([srv.url]) as tts:
        chunks, exc = await collect(tts.stream("Hi."))
    assert len(chunks) == 1
    assert isinstance(exc, httpx.RemoteProtocolError)


async def test_timeout_s_is_sent_and_enforced_client_side(fake_server):
    srv = fake_server()
    srv.script(Behaviour.stall(after=1), Behaviour.stall(after=0))
    loop = asyncio.get_running_loop()
    async with OrpheusTTS([srv.url]) as tts:
        started = loop.time()
        chunks, exc = await collect(tts.stream("Hi.", timeout_s=1.0))
        elapsed = loop.time() - started
        assert len(chunks) == 1
        assert isinstance(exc, DeadlineExceededError) and isinstance(exc, asyncio.TimeoutError)
        assert elapsed < 5  # a stalled server does not hang the caller

        with pytest.raises(asyncio.TimeoutError):  # before any audio, too
            await tts.synthesize("Hi.", timeout_s=0.8)
    assert [r.body["timeout_s"] for r in srv.stream_requests] == [1.0, 0.8]
    assert await srv.await_until(lambda: srv.cancelled_streams == 2)


async def test_instance_default_timeout_applies_to_every_request(fake_server):
    srv = fake_server()
    srv.script(Behaviour.stall(after=0))
    async with OrpheusTTS([srv.url], timeout_s=0.8) as tts:
        with pytest.raises(DeadlineExceededError):
            await tts.synthesize("Hi.")
    assert srv.stream_requests[0].body["timeout_s"] == 0.8
    with pytest.raises(ValueError):
        OrpheusTTS([srv.url]).stream("Hi.", timeout_s=0)


async def test_server_side_deadline_frame_is_a_timeout_error(fake_server):
    srv = fake_server()
    srv.script(Behaviour.error("deadline_exceeded", after=1, message="server deadline"))
    async with OrpheusTTS([srv.url]) as tts:  # no client-side deadline: the frame decides
        chunks, exc = await collect(tts.stream("Hi."))
    assert len(chunks) == 1
    assert isinstance(exc, DeadlineExceededError) and isinstance(exc, asyncio.TimeoutError)
    assert exc.code == "deadline_exceeded" and exc.message == "server deadline"


async def test_server_enforces_timeout_s_too(fake_server):
    srv = fake_server(chunks=50, chunk_delay_ms=100)  # 5 s of streaming; the server stops it
    async with OrpheusTTS([srv.url]) as tts:
        chunks, exc = await collect(tts.stream("Hi.", timeout_s=1.0))
    assert 1 <= len(chunks) < 50
    assert isinstance(exc, DeadlineExceededError)


async def test_stream_with_no_audio_but_eos_ends_cleanly(fake_server):
    srv = fake_server()
    srv.script(Behaviour.normal(chunks=0))
    async with OrpheusTTS([srv.url]) as tts:
        assert await tts.synthesize("Hi.") == b""


async def test_concurrent_streams_share_one_instance(fake_server):
    srv = fake_server(chunks=3, chunk_delay_ms=20)
    async with OrpheusTTS([srv.url]) as tts:
        results = await asyncio.gather(*(tts.synthesize(f"text {i}") for i in range(5)))
    assert all(r == srv.expected_pcm(3) for r in results)
    assert await srv.await_until(lambda: srv.completed_streams == 5)
