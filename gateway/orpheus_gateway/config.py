"""Gateway settings: one dataclass, built from the command line (and `ORPHEUS_API_KEYS`)."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from orpheus_tts.protocol import DEFAULT_MAX_TEXT_CHARS, DEFAULT_MAX_TIMEOUT_S, DEFAULT_TIMEOUT_S

API_KEYS_ENV = "ORPHEUS_API_KEYS"


class ConfigError(ValueError):
    """Settings the gateway refuses to start with; the message is shown to the operator."""


@dataclass
class GatewayConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: list[str] = field(default_factory=list)  # static worker base URLs
    discover: str | None = None  # "NAMESPACE/SERVICE": ready EndpointSlice endpoints
    api_keys: list[str] = field(default_factory=list)
    system_keys: list[str] = field(default_factory=list)  # valid for GET /v1/system only
    no_auth: bool = False
    rate_limit_rpm: int = 600  # per key; 0 disables
    max_streams_per_key: int = 32  # concurrent streams per key; 0 disables
    max_pending: int = 64  # requests held while no worker can take them; 0: refuse at once
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS
    default_timeout_s: float = DEFAULT_TIMEOUT_S
    max_timeout_s: float = DEFAULT_MAX_TIMEOUT_S
    voice_aliases: dict[str, str] | None = None  # None: the built-in OpenAI alias map
    default_voice: str | None = None
    # routing
    max_attempts: int = 3  # workers tried for one request before the first byte
    poll_interval_s: float = 1.0  # /v1/system polling of each worker
    poll_timeout_s: float = 2.0  # a poll slower than this marks the worker unreachable
    connect_timeout_s: float = 2.0
    breaker_failures: int = 3  # consecutive failures that open a worker's breaker
    breaker_reset_s: float = 5.0  # open -> half-open after this long
    ttfa_window_s: float = 60.0
    # WebSocket
    ws_idle_timeout_s: float = 120.0
    ws_auth_timeout_s: float = 10.0
    ws_ping_interval_s: float = 20.0

    def __post_init__(self) -> None:
        self.validate()

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys)

    def validate(self) -> None:
        if bool(self.workers) == bool(self.discover):
            raise ConfigError("give exactly one of --workers URL,URL or --discover NAMESPACE/SERVICE")
        if self.discover is not None:
            ns, _, svc = self.discover.partition("/")
            if not ns or not svc or "/" in svc:
                raise ConfigError(f"--discover wants NAMESPACE/SERVICE, got {self.discover!r}")
        for url in self.workers:
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"worker URL must start with http:// or https://: {url!r}")
        if not self.api_keys and not self.no_auth:
            raise ConfigError(
                "no API keys configured: pass --api-keys-file PATH or set ORPHEUS_API_KEYS, "
                "or run without authentication with --no-auth (local use only)"
            )
        if self.max_text_chars < 1 or self.max_timeout_s <= 0 or self.default_timeout_s <= 0:
            raise ConfigError("--max-text-chars, --default-timeout-s and --max-timeout-s must be "
                              "positive")
        if self.rate_limit_rpm < 0 or self.max_streams_per_key < 0 or self.max_pending < 0:
            raise ConfigError("--rate-limit-rpm, --max-streams-per-key and --max-pending must "
                              "be >= 0")
        if self.max_attempts < 1:
            raise ConfigError("max_attempts must be >= 1")
        if self.poll_interval_s <= 0 or self.poll_timeout_s <= 0:
            raise ConfigError("poll_interval_s and poll_timeout_s must be positive")


def read_api_keys(path: str | os.PathLike[str] | None, env: str | None) -> list[str]:
    """Keys from a file (one per line, `#` comments, blank lines skipped) plus the env list."""
    keys: list[str] = []
    if path is not None:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read API keys file {str(path)!r}: {exc.strerror}") from None
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                keys.append(line)
    if env:
        keys += [k.strip() for k in env.split(",") if k.strip()]
    return keys


def read_voice_aliases(path: str | os.PathLike[str]) -> dict[str, str]:
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read voice aliases file {str(path)!r}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"voice aliases file {str(path)!r} is not JSON: {exc}") from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise ConfigError("voice aliases file must be a JSON object of alias -> voice strings")
    return {k.lower(): v for k, v in data.items()}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="orpheus-tts gateway",
        description="Gateway in front of Orpheus TTS workers: auth, routing, v1/OpenAI/WebSocket APIs.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--workers", help="comma-separated worker base URLs")
    src.add_argument("--discover", metavar="NAMESPACE/SERVICE",
                     help="route to the ready endpoints of this Kubernetes Service")
    p.add_argument("--api-keys-file", help="one key per line; '#' starts a comment")
    p.add_argument("--no-auth", action="store_true", help="serve without API keys (local use)")
    p.add_argument("--rate-limit-rpm", type=int, default=600, help="requests per minute per key")
    p.add_argument("--max-streams-per-key", type=int, default=32)
    p.add_argument("--max-pending", type=int, default=64,
                   help="requests held (up to their deadline) while no worker can take them, "
                        "e.g. scaled to zero; beyond: 503 overloaded with Retry-After; 0 "
                        "refuses at once")
    p.add_argument("--system-keys-file",
                   help="keys (one per line) valid for GET /v1/system only: the operator's "
                        "autoscaler reads the gateway with one"),
    p.add_argument("--max-text-chars", type=int, default=DEFAULT_MAX_TEXT_CHARS)
    p.add_argument("--default-timeout-s", type=float, default=DEFAULT_TIMEOUT_S,
                   help="deadline of a request that sets no timeout_s")
    p.add_argument("--max-timeout-s", type=float, default=DEFAULT_MAX_TIMEOUT_S)
    p.add_argument("--voice-aliases", metavar="FILE", help="JSON object alias -> model voice")
    p.add_argument("--default-voice", help="voice used when a request names none")
    return p


def config_from_args(argv: list[str], environ: dict[str, str] | None = None) -> GatewayConfig:
    """Parse the command line; raises `ConfigError` with an operator-facing message."""
    environ = dict(os.environ if environ is None else environ)
    args = build_parser().parse_args(argv)
    workers = [u.strip().rstrip("/") for u in (args.workers or "").split(",") if u.strip()]
    if args.workers is not None and not workers:
        raise ConfigError("--workers needs at least one URL")
    return GatewayConfig(
        host=args.host,
        port=args.port,
        workers=workers,
        discover=args.discover,
        api_keys=read_api_keys(args.api_keys_file, environ.get(API_KEYS_ENV)),
        system_keys=read_api_keys(args.system_keys_file, None),
        no_auth=args.no_auth,
        rate_limit_rpm=args.rate_limit_rpm,
        max_streams_per_key=args.max_streams_per_key,
        max_pending=args.max_pending,
        max_text_chars=args.max_text_chars,
        default_timeout_s=args.default_timeout_s,
        max_timeout_s=args.max_timeout_s,
        voice_aliases=read_voice_aliases(args.voice_aliases) if args.voice_aliases else None,
        default_voice=args.default_voice,
    )
