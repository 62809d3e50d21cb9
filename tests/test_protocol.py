"""The v1 wire contract (`orpheus_tts.protocol`): frames and request validation."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orpheus_tts import protocol as p

FRAMES = [
    p.ChunkFrame(seq=3, audio="AAEC", samples=1),
    p.MetricsFrame(worker_id="w-1", queue_wait_ms=0.4, ttfa_ms=212.0, queue_depth=2, inflight=1),
    p.EosFrame(chunks=12, samples=24576, audio_s=1.024, ttfa_ms=212.0, total_ms=950.1, rtf=0.93),
    p.ErrorFrame(code="deadline_exceeded", message="too slow", retryable=False),
]


@pytest.mark.parametrize("frame", FRAMES, ids=lambda f: f.type)
def test_every_frame_type_round_trips(frame):
    line = p.encode_frame(frame)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert p.decode_frame(line) == frame
    assert p.frame_type(line) == frame.type


@given(seq=st.integers(0, 10**6), pcm=st.binary(max_size=64).map(lambda b: b[: len(b) // 2 * 2]))
def test_chunk_line_equals_encode_frame(seq, pcm):
    frame = p.ChunkFrame(seq=seq, audio=base64.b64encode(pcm).decode(), samples=len(pcm) // 2)
    assert p.chunk_line(seq, pcm) == p.encode_frame(frame)
    decoded = p.decode_frame(p.chunk_line(seq, pcm))
    assert isinstance(decoded, p.ChunkFrame) and decoded.pcm() == pcm


def test_unknown_frame_types_and_fields_are_tolerated():
    assert p.decode_frame(b'{"type":"heartbeat","t":1}\n') is None
    assert p.decode_frame(b"   \n") is None
    frame = p.decode_frame(b'{"type":"eos","chunks":1,"samples":2,"audio_s":0.1,"new":true}')
    assert isinstance(frame, p.EosFrame) and frame.chunks == 1


def test_malformed_lines_raise_frame_decode_error():
    with pytest.raises(p.FrameDecodeError):
        p.decode_frame(b"not json")
    with pytest.raises(p.FrameDecodeError):
        p.decode_frame(b"[1, 2]")
    with pytest.raises(p.FrameDecodeError):
        p.decode_frame(b'{"type":"chunk","seq":"x"}')


def test_error_frame_retryable_defaults_from_code():
    assert p.error_frame(p.ErrorCode.UPSTREAM_LOST, "lost").retryable is True
    assert p.error_frame(p.ErrorCode.INVALID_REQUEST, "bad").retryable is False
    assert p.error_frame(p.ErrorCode.UPSTREAM_LOST, "lost", retryable=False).retryable is False


def test_unknown_request_key_is_refused_by_name():
    with pytest.raises(p.RequestError) as info:
        p.parse_request({"text": "hi", "speed": 2})
    err = info.value
    assert err.status == 400 and err.code == p.ErrorCode.UNKNOWN_PARAMETER
    assert err.param == "speed" and "speed" in err.message
    assert err.body() == {"error": {"message": err.message, "type": "invalid_request_error",
                                    "code": "unknown_parameter", "param": "speed"}}


def test_text_limit_message_states_the_limit():
    with pytest.raises(p.RequestError) as info:
        p.parse_request({"text": "x" * 11}, max_text_chars=10)
    assert info.value.code == p.ErrorCode.TEXT_TOO_LONG and info.value.param == "text"
    assert "10" in info.value.message and "11" in info.value.message
    assert p.parse_request({"text": "x" * 10}, max_text_chars=10).text == "x" * 10


@pytest.mark.parametrize("body", [{}, {"text": ""}, {"text": "   "}, "text", [1],
                                  {"text": "hi", "temperature": 3}])
def test_bad_requests_are_400s(body):
    with pytest.raises(p.RequestError) as info:
        p.parse_request(body)
    assert info.value.status == 400


def test_repetition_penalty_below_minimum_is_refused():
    with pytest.raises(p.RequestError) as info:
        p.parse_request({"text": "hi", "repetition_penalty": 1.09})
    assert info.value.param == "repetition_penalty"
    assert p.parse_request({"text": "hi", "repetition_penalty": 1.1}).repetition_penalty == 1.1


def test_timeout_s_is_capped_silently():
    req = p.parse_request({"text": "hi", "timeout_s": 1000}, max_timeout_s=300)
    assert req.timeout_s == 300
    assert p.parse_request({"text": "hi", "timeout_s": 5}).timeout_s == 5
    with pytest.raises(p.RequestError):
        p.parse_request({"text": "hi", "timeout_s": 0})


def test_raw_body_must_be_json():
    with pytest.raises(p.RequestError) as info:
        p.parse_request_bytes(b"{not json")
    assert info.value.status == 400
    assert p.parse_request_bytes(json.dumps({"text": "hi"}).encode()).text == "hi"


def test_retry_after_header_is_whole_seconds():
    err = p.RequestError(p.ErrorCode.OVERLOADED, "busy", retry_after_s=0.2)
    assert err.headers() == {"Retry-After": "1"}
    assert p.RequestError(p.ErrorCode.INVALID_REQUEST, "bad").headers() == {}
    assert p.load_headers(3, 1) == {p.HEADER_QUEUE_DEPTH: "3", p.HEADER_INFLIGHT: "1"}


def _doc_error_table() -> dict[str, tuple[int, bool, bool, bool]]:
    """docs/protocol.md's error-code table, as {code: (status, retryable, fault, request)}."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "protocol.md").read_text()
    section = doc.split("## Error codes", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 5 and cells[0].startswith("`"):
            yes = {"yes": True, "no": False}
            rows[cells[0].strip("`")] = (int(cells[1]), yes[cells[2]], yes[cells[3]],
                                         yes[cells[4]])
    return rows


def test_the_documented_error_table_is_the_enum():
    declared = {c.value: (c.status, c.retryable, c.endpoint_fault, c.request_fault)
                for c in p.ErrorCode}
    assert _doc_error_table() == declared


@pytest.mark.parametrize("code", list(p.ErrorCode), ids=str)
def test_error_code_round_trips_through_the_wire_and_its_frame_defaults(code):
    assert p.ErrorCode.of(code.value) is code
    frame = p.decode_frame(p.error_line(code, "m"))
    assert isinstance(frame, p.ErrorFrame) and frame.error_code is code
    assert frame.retryable is code.retryable
    err = p.RequestError(code, "m")
    assert err.status == code.status and err.body()["error"]["code"] == code.value


def test_unknown_codes_are_classified_by_status():
    assert p.ErrorCode.of("brand_new", 502) is p.ErrorCode.UPSTREAM_LOST
    assert p.ErrorCode.of(None, 503) is p.ErrorCode.OVERLOADED
    assert p.ErrorCode.of(None, 500) is p.ErrorCode.INTERNAL
    assert p.ErrorCode.of("brand_new") is p.ErrorCode.INTERNAL
    assert p.ErrorCode.of(None, 418) is p.ErrorCode.INVALID_REQUEST


@given(seq=st.integers(0, 10**6), pcm=st.binary(max_size=64).map(lambda b: b[: len(b) // 2 * 2]))
def test_chunk_audio_fast_path_reads_what_chunk_line_writes(seq, pcm):
    assert p.chunk_audio(p.chunk_line(seq, pcm)) == pcm


def test_chunk_audio_reads_other_key_orders_through_the_decoder():
    line = b'{"type":"chunk","audio":"AAEC","seq":0,"samples":1}\n'
    assert p.line_type(line) == "chunk" and p.chunk_audio(line) == b"\x00\x01\x02"
    odd = b'{"type":"chunk","seq":0,"audio":"AA\\/E","samples":1}\n'  # an escaped slash
    assert p.chunk_audio(odd) == p.decode_frame(odd).pcm()
    with pytest.raises(p.FrameDecodeError):
        p.chunk_audio(b'{"type":"chunk","seq":"x"}\n')


def test_load_hints_parse_headers_once_for_everyone():
    hints = p.LoadHints.from_headers({p.HEADER_QUEUE_DEPTH: "3", p.HEADER_INFLIGHT: "x",
                                      p.HEADER_WORKER_ID: "w-1"})
    assert hints == p.LoadHints(queue_depth=3, inflight=None, worker_id="w-1")
    assert p.LoadHints.from_headers({p.HEADER_INFLIGHT: "-1"}).inflight is None
