"""HTTP: paths, media types, headers, and the load hints a response carries.

Load hints (`X-Orpheus-Queue-Depth`, `X-Orpheus-Inflight`, `X-Orpheus-Worker`) arrive before
the first frame; `LoadHints.from_headers` is the one parser the SDK and the gateway share.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

STREAM_PATH = "/v1/tts/stream"
SYSTEM_PATH = "/v1/system"
VOICES_PATH = "/v1/voices"
SPEECH_PATH = "/v1/audio/speech"
WS_PATH = "/v1/tts/ws"
NDJSON = "application/x-ndjson"

HEADER_REQUEST_ID = "X-Request-ID"
HEADER_QUEUE_DEPTH = "X-Orpheus-Queue-Depth"
HEADER_INFLIGHT = "X-Orpheus-Inflight"
HEADER_WORKER_ID = "X-Orpheus-Worker"
HEADER_RETRY_AFTER = "Retry-After"

REQUEST_ID_PATTERN = r"^[\x21-\x7e]{1,128}$"  # visible ASCII: usable as a header value anywhere


def is_valid_request_id(value: str) -> bool:
    return 0 < len(value) <= 128 and all(33 <= ord(c) <= 126 for c in value)


def load_headers(queue_depth: int, inflight: int) -> dict[str, str]:
    """Load hints as response headers, readable before the first frame."""
    return {HEADER_QUEUE_DEPTH: str(queue_depth), HEADER_INFLIGHT: str(inflight)}


def _count(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        n = int(value)
    except ValueError:
        return None
    return n if n >= 0 else None


@dataclass(frozen=True)
class LoadHints:
    """What a response's headers say about the server's load; None where not said."""

    queue_depth: int | None = None
    inflight: int | None = None
    worker_id: str | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> LoadHints:
        """Parse the hint headers (case-insensitive mappings such as httpx's); bad values
        count as absent."""
        return cls(queue_depth=_count(headers, HEADER_QUEUE_DEPTH),
                   inflight=_count(headers, HEADER_INFLIGHT),
                   worker_id=headers.get(HEADER_WORKER_ID) or None)
