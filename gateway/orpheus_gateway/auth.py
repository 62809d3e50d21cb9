"""API keys and per-key limits.

Keys are kept only as SHA-256 digests and compared in constant time; what the rest of the
gateway (logs, metrics, limits) sees is a `key_id`, a short digest prefix that cannot be
turned back into the key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from orpheus_tts.protocol import ErrorCode, RequestError

ANONYMOUS = "anonymous"  # the key id of every caller when auth is off
API_KEY_QUERY_PARAM = "api_key"


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


class KeyStore:
    """The configured keys, hashed. Empty store = auth off."""

    def __init__(self, keys: list[str]):
        self._digests = [_digest(k) for k in dict.fromkeys(keys)]

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def identify(self, presented: str | None) -> str | None:
        """The key id of a valid key, `None` for a missing or wrong one.

        Every stored digest is compared (constant time each, no early exit), so timing says
        nothing about which key or how much of it matched.
        """
        if not self.enabled:
            return ANONYMOUS
        if not presented:
            return None
        candidate = _digest(presented)
        match = None
        for digest in self._digests:
            if hmac.compare_digest(candidate, digest):
                match = digest
        return match.hex()[:12] if match is not None else None


def presented_key(headers: Mapping[str, str], query: Mapping[str, str] | None = None) -> str | None:
    """The key a request carries: `Authorization: Bearer`, `X-API-Key`, `?api_key=`, or
    `Authorization: Basic` with the key as password (or as user name with no password), which
    is how a browser brings it to a page after asking for it."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        if scheme.lower() == "basic" and value.strip():
            return _basic_key(value.strip())
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    if query is not None and query.get(API_KEY_QUERY_PARAM):
        return query[API_KEY_QUERY_PARAM]
    return None


def _basic_key(credentials: str) -> str | None:
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep:
        return None
    return password or user or None


def unauthorized(present: bool) -> RequestError:
    msg = ("Incorrect API key provided." if present else
           "Missing API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'.")
    return RequestError(ErrorCode.UNAUTHORIZED, msg)


class TokenBucket:
    """`capacity` tokens, refilled at `rate_per_s`; `take()` answers how long until one is free."""

    def __init__(self, capacity: float, rate_per_s: float, clock: Callable[[], float]):
        self.capacity = capacity
        self.rate = rate_per_s
        self._clock = clock
        self._tokens = capacity
        self._at = clock()

    def take(self) -> float:
        """Take one token: 0.0 on success, else the seconds until one is available."""
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate


@dataclass
class StreamSlot:
    """One held concurrent-stream slot; `release()` is idempotent."""

    limiter: "KeyLimiter"
    key_id: str
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.limiter._release(self.key_id)


class KeyLimiter:
    """Per key: requests per minute (token bucket, burst = one minute) and concurrent streams."""

    def __init__(self, rpm: int, max_streams: int, clock: Callable[[], float] = time.monotonic,
                 on_reject: Callable[[str], None] | None = None):
        self.rpm = rpm
        self.max_streams = max_streams
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._streams: dict[str, int] = {}
        self._on_reject = on_reject or (lambda _reason: None)

    def admit(self, key_id: str) -> StreamSlot:
        """Count one stream request against `key_id`; raises a 429 `RequestError` when over."""
        if self.rpm > 0:
            bucket = self._buckets.get(key_id)
            if bucket is None:
                bucket = self._buckets[key_id] = TokenBucket(self.rpm, self.rpm / 60.0, self._clock)
            wait = bucket.take()
            if wait > 0:
                self._on_reject("rpm")
                raise RequestError(
                    ErrorCode.RATE_LIMITED,
                    f"Rate limit reached: {self.rpm} requests per minute for this key.",
                    retry_after_s=max(1.0, math.ceil(wait)))
        active = self._streams.get(key_id, 0)
        if self.max_streams > 0 and active >= self.max_streams:
            self._on_reject("streams")
            raise RequestError(
                ErrorCode.RATE_LIMITED,
                f"Too many concurrent streams: the limit is {self.max_streams} for this key.",
                retry_after_s=1.0)
        self._streams[key_id] = active + 1
        return StreamSlot(self, key_id)

    def _release(self, key_id: str) -> None:
        left = self._streams.get(key_id, 0) - 1
        if left > 0:
            self._streams[key_id] = left
        else:
            self._streams.pop(key_id, None)

    def active_streams(self, key_id: str) -> int:
        return self._streams.get(key_id, 0)
