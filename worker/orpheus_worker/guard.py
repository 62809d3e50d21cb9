"""What stands between the network and the worker's routes: the internal credential and a
bounded request body.

Workers are reached only by gateways. With an internal token configured (the operator always
sets one), every route but the probes and `/metrics` wants it in `X-Orpheus-Internal-Token`,
so a pod that bypasses the gateway bypasses nothing: without the token it gets 401. Every
request body is read here, before any route sees it, and bounded twice: at most
`max_body_bytes` (413) and complete within `body_timeout_s` (408); a client that leaves
mid-body gets no answer and no log line.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
from pathlib import Path

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orpheus_tts import protocol as P

# Reachable without the internal token: the kubelet's probes (startup, readiness, liveness: see
# orpheus_operator.manifests.WORKER_PROBES), /healthz and Prometheus.
OPEN_PATHS = frozenset({"/healthz", "/startupz", "/readyz", "/livez", "/metrics"})
MAX_BODY_BYTES = 1 << 20
BODY_TIMEOUT_S = 10.0


def read_internal_token(path: str | None, environ: dict[str, str] | None = None) -> str | None:
    """The token from `--internal-token-file` (first line), else `ORPHEUS_INTERNAL_TOKEN`."""
    if path:
        token = Path(path).read_text().strip()
        if not token:
            raise ValueError(f"internal token file {path!r} is empty")
        return token
    env = os.environ if environ is None else environ
    return env.get(P.INTERNAL_TOKEN_ENV, "").strip() or None


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).digest()


class _BodyProblem(Exception):
    def __init__(self, error: P.RequestError | None):
        self.error = error  # None: the client left, nobody to answer


class WorkerGuard:
    """ASGI middleware: internal credential, then the whole body read with bounds."""

    def __init__(self, app: ASGIApp, token: str | None, max_body_bytes: int = MAX_BODY_BYTES,
                 body_timeout_s: float = BODY_TIMEOUT_S):
        self.app = app
        self._token = _digest(token) if token else None
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if self._token is not None and scope["path"] not in OPEN_PATHS:
            presented = headers.get(P.HEADER_INTERNAL_TOKEN)
            if presented is None or not hmac.compare_digest(_digest(presented), self._token):
                await _answer(send, P.RequestError(
                    P.ErrorCode.UNAUTHORIZED,
                    "This worker serves its gateways only: internal token missing or wrong."))
                return
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        try:
            body = await asyncio.wait_for(self._read_body(headers, receive), self.body_timeout_s)
        except asyncio.TimeoutError:
            await _answer(send, P.RequestError(
                P.ErrorCode.REQUEST_TIMEOUT,
                f"The request body did not arrive within {self.body_timeout_s:g} s."), close=True)
            return
        except _BodyProblem as exc:
            if exc.error is not None:
                await _answer(send, exc.error, close=True)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read_body(self, headers: Headers, receive: Receive) -> bytes:
        too_big = _BodyProblem(P.RequestError(
            P.ErrorCode.REQUEST_TOO_LARGE, f"Request body is over {self.max_body_bytes} bytes."))
        try:
            declared = int(headers.get("content-length", "0"))
        except ValueError:
            raise _BodyProblem(P.RequestError(P.ErrorCode.INVALID_REQUEST,
                                              "Invalid Content-Length.")) from None
        if declared > self.max_body_bytes:
            raise too_big
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _BodyProblem(None)
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes:
                raise too_big
            if not message.get("more_body", False):
                return bytes(body)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body, read already, as the first message; then the real channel (disconnects)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()
    return replayed


async def _answer(send: Send, error: P.RequestError, close: bool = False) -> None:
    headers = [(b"content-type", b"application/json")]
    if close:  # the rest of the body is still on the wire: do not reuse the connection
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(error.body()).encode()})
