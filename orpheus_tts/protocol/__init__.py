"""The v1 wire contract, defined once and imported by the SDK, the gateway and the worker.

`docs/protocol.md` is the prose version of this package; one module per concern:
`errors` (what each error code means), `headers` (paths and headers, load hints),
`request` (the v1 request), `frames` (the NDJSON stream), `system` (`/v1/system`) and
`ws` (the WebSocket session). Everything is re-exported here: `from orpheus_tts import
protocol as p` then `p.ErrorCode`, `p.chunk_line`, ...
"""

from .errors import ErrorCode, RequestError, error_body
from .frames import (CHANNELS, CHUNK_LINE_PREFIX, MAX_FRAME_BYTES, SAMPLE_RATE, SAMPLE_WIDTH,
                     TERMINAL_TYPES, ChunkFrame, EosFrame, ErrorFrame, Frame, FrameDecodeError,
                     MetricsFrame, chunk_audio, chunk_line, decode_frame, encode_frame,
                     error_frame, error_line, frame_type, line_type, pcm_seconds)
from .headers import (GROQ_SPEECH_PATH, HEADER_INFLIGHT, HEADER_INTERNAL_TOKEN,
                      HEADER_QUEUE_DEPTH, HEADER_REQUEST_ID, HEADER_RETRY_AFTER,
                      HEADER_WORKER_ID, INTERNAL_TOKEN_ENV, MODELS_PATH, NDJSON,
                      REQUEST_ID_PATTERN, SPEECH_PATH, STREAM_PATH, SYSTEM_PATH, VOICES_PATH,
                      WS_PATH, LoadHints, is_valid_request_id, load_headers)
from .request import (DEFAULT_MAX_TEXT_CHARS, DEFAULT_MAX_TIMEOUT_S, DEFAULT_TIMEOUT_S,
                      MIN_REPETITION_PENALTY, REQUEST_FIELDS, TTSRequest, clip,
                      parse_json_body, parse_request, parse_request_bytes,
                      validation_to_request_error)
from .system import PoolState, SystemSnapshot, WorkerState
from .ws import (WS_CLOSE_IDLE, WS_CLOSE_UNAUTHORIZED, WS_MAX_APPEND_CHARS, WS_TERMINAL_TYPES,
                 WsAppend, WsAuth, WsCancel, WsCancelled, WsClientMessage, WsClose, WsDone, WsEnd,
                 WsError, WsFlush, WsInterrupt, WsOpen, WsPing, WsPong, WsReady, WsSegment,
                 WsServerMessage, WsSpeak, WsStarted, decode_ws_audio, encode_ws_audio,
                 parse_ws_message)

__all__ = [
    "CHANNELS", "CHUNK_LINE_PREFIX", "DEFAULT_MAX_TEXT_CHARS", "DEFAULT_MAX_TIMEOUT_S",
    "DEFAULT_TIMEOUT_S", "GROQ_SPEECH_PATH", "HEADER_INFLIGHT", "HEADER_INTERNAL_TOKEN",
    "HEADER_QUEUE_DEPTH", "HEADER_REQUEST_ID", "HEADER_RETRY_AFTER", "HEADER_WORKER_ID",
    "INTERNAL_TOKEN_ENV", "MAX_FRAME_BYTES", "MIN_REPETITION_PENALTY", "MODELS_PATH", "NDJSON",
    "REQUEST_FIELDS", "REQUEST_ID_PATTERN", "SAMPLE_RATE", "SAMPLE_WIDTH", "SPEECH_PATH",
    "STREAM_PATH", "SYSTEM_PATH", "TERMINAL_TYPES", "VOICES_PATH", "WS_CLOSE_IDLE",
    "WS_CLOSE_UNAUTHORIZED", "WS_MAX_APPEND_CHARS", "WS_PATH", "WS_TERMINAL_TYPES", "ChunkFrame", "EosFrame",
    "ErrorCode", "ErrorFrame", "Frame", "FrameDecodeError", "LoadHints", "MetricsFrame",
    "PoolState", "RequestError", "SystemSnapshot", "TTSRequest", "WorkerState", "WsAppend",
    "WsAuth", "WsCancel", "WsCancelled", "WsClientMessage", "WsClose", "WsDone", "WsEnd",
    "WsError", "WsFlush", "WsInterrupt", "WsOpen", "WsPing", "WsPong", "WsReady", "WsSegment",
    "WsServerMessage", "WsSpeak", "WsStarted", "chunk_audio", "chunk_line",
    "clip", "decode_frame", "decode_ws_audio", "encode_frame", "encode_ws_audio", "error_body",
    "error_frame", "error_line", "frame_type", "is_valid_request_id", "line_type",
    "load_headers", "parse_json_body", "parse_request", "parse_request_bytes", "pcm_seconds",
    "parse_ws_message", "validation_to_request_error",
]
