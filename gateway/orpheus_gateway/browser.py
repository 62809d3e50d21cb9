"""What a web page on another site may make a browser do with a key it remembers: nothing.

A browser sends the HTTP Basic credentials it was given for the playground with any request to
this host, whichever page started it. Two doors would let another site use them:
- a WebSocket upgrade (not subject to CORS): refused unless its `Origin` is allowed — the
  gateway's own origin (where the playground is served) plus `--allowed-origins`; a client
  that sends no `Origin` is not a browser and is let through to authenticate as usual;
- a "simple" cross-site POST (`text/plain`, form encodings: no preflight): every POST API
  takes `application/json` only, which a cross-site page can send only after a CORS preflight
  this gateway never approves; anything else is 415.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from orpheus_tts.protocol import ErrorCode, RequestError

JSON_TYPE = "application/json"


def normalize_origin(origin: str) -> str | None:
    """`scheme://host[:port]`, lower-cased with default ports dropped; None if not an origin."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        return None
    default = {"http": 80, "https": 443}[parts.scheme]
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


class OriginPolicy:
    def __init__(self, allowed: Iterable[str] = ()):
        self.allowed = frozenset(o for o in (normalize_origin(a) for a in allowed) if o)

    def allows(self, headers: Mapping[str, str]) -> bool:
        """May a request with these headers (an upgrade, typically) proceed?

        The own origin is the one whose host (and port) is the request's `Host`: the scheme is
        not compared, as TLS is often terminated in front of the gateway.
        """
        origin = headers.get("origin")
        if origin is None:
            return True
        theirs = normalize_origin(origin)
        if theirs is None:
            return False
        return theirs.split("://", 1)[1] == headers.get("host", "").lower() \
            or theirs in self.allowed


def require_json(headers: Mapping[str, str]) -> None:
    """415 unless the body is declared `application/json` (parameters such as charset allowed)."""
    declared = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if declared != JSON_TYPE:
        raise RequestError(ErrorCode.UNSUPPORTED_MEDIA_TYPE,
                           "Send the body as JSON with 'Content-Type: application/json'.")
