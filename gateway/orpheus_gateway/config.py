"""Gateway settings: one dataclass, built from the command line (and `ORPHEUS_API_KEYS`).

The workers are one model pool given by flags (`--workers`/`--discover`, `--model-name`,
`--voice-aliases`, `--default-voice`), or several given by `--pools-file` (docs/gateway.md,
"Model pools"): a JSON object `{"default_pool": NAME, "pools": [{"name", "model", "workers" |
"discover", "voices", "voice_aliases", "default_voice"}, ...]}` (the operator renders it from
`OrpheusCluster.spec.pools`: `orpheus_operator.manifests.pools_document`).
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from orpheus_tts.protocol import (DEFAULT_MAX_TEXT_CHARS, DEFAULT_MAX_TIMEOUT_S,
                                  DEFAULT_TIMEOUT_S, INTERNAL_TOKEN_ENV)

from .browser import normalize_origin

from .pools import PoolConfig, PoolConfigError, validate_pools

API_KEYS_ENV = "ORPHEUS_API_KEYS"

# Bounds on what one client may hold (docs/gateway.md, "Hostile clients").
HEADER_TIMEOUT_S = 10.0  # a request head must arrive within this (and a silent socket closes)
BODY_TIMEOUT_S = 10.0  # a request body must arrive within this: 408
WS_MAX_QUEUED = 16  # utterances one WebSocket session may have waiting; beyond: `overloaded`
# Key rotation: the keys file is re-read this often; a change takes effect within the bound.
KEY_RELOAD_INTERVAL_S = 1.0
KEY_RELOAD_BOUND_S = 2.0


class ConfigError(ValueError):
    """Settings the gateway refuses to start with; the message is shown to the operator."""


@dataclass
class GatewayConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: list[str] = field(default_factory=list)  # static worker base URLs
    discover: str | None = None  # "NAMESPACE/SERVICE": ready EndpointSlice endpoints
    api_keys: list[str] = field(default_factory=list)
    api_keys_file: str | None = None  # watched: a changed file swaps the keys without a restart
    env_api_keys: list[str] = field(default_factory=list)  # from ORPHEUS_API_KEYS, kept on reload
    allowed_origins: list[str] = field(default_factory=list)  # besides the gateway's own
    worker_token: str | None = field(default=None, repr=False)  # sent to workers
    system_keys: list[str] = field(default_factory=list)  # valid for GET /v1/system only
    no_auth: bool = False
    rate_limit_rpm: int = 600  # per key; 0 disables
    max_streams_per_key: int = 32  # concurrent streams per key; 0 disables
    max_pending: int = 64  # requests held while no worker can take them; 0: refuse at once
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS
    default_timeout_s: float = DEFAULT_TIMEOUT_S
    max_timeout_s: float = DEFAULT_MAX_TIMEOUT_S
    voice_aliases: dict[str, str] | None = None  # entries over the built-in OpenAI/Groq table
    model_name: str | None = None  # the served model's public name; None: what workers report
    default_voice: str | None = None
    # several model pools instead of the single one above (`--pools-file`)
    pools: list[PoolConfig] = field(default_factory=list)
    default_pool: str | None = None
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
    ws_max_queued: int = WS_MAX_QUEUED
    body_timeout_s: float = BODY_TIMEOUT_S

    def __post_init__(self) -> None:
        self.validate()

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys)

    def pool_configs(self) -> list[PoolConfig]:
        """The configured pools; the flags' single pool (named `default`) when none are."""
        if self.pools:
            return self.pools
        return [PoolConfig(model=self.model_name, workers=self.workers, discover=self.discover,
                           voice_aliases=self.voice_aliases, default_voice=self.default_voice)]

    def validate(self) -> None:
        if self.pools:
            if self.workers or self.discover:
                raise ConfigError("give either --pools-file or --workers/--discover, not both")
        elif bool(self.workers) == bool(self.discover):
            raise ConfigError("give exactly one of --workers URL,URL or --discover NAMESPACE/SERVICE")
        elif self.discover is not None:
            ns, _, svc = self.discover.partition("/")
            if not ns or not svc or "/" in svc:
                raise ConfigError(f"--discover wants NAMESPACE/SERVICE, got {self.discover!r}")
        for url in self.workers:
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"worker URL must start with http:// or https://: {url!r}")
        try:
            self.default_pool = validate_pools(self.pool_configs(), self.default_pool)
        except PoolConfigError as exc:
            raise ConfigError(str(exc)) from None
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
        for origin in self.allowed_origins:
            if normalize_origin(origin) is None:
                raise ConfigError(f"--allowed-origins wants scheme://host[:port], got {origin!r}")
        if self.ws_max_queued < 0:
            raise ConfigError("ws_max_queued must be >= 0")
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


def read_worker_token(path: str | None, environ: dict[str, str]) -> str | None:
    if path:
        try:
            token = Path(path).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read worker token file {path!r}: {exc.strerror}") from None
        if not token:
            raise ConfigError(f"worker token file {path!r} is empty")
        return token
    return environ.get(INTERNAL_TOKEN_ENV, "").strip() or None


def read_json_file(path: str | os.PathLike[str], what: str) -> object:
    try:
        return json.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {str(path)!r}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"{what} {str(path)!r} is not JSON: {exc}") from None


def read_voice_aliases(path: str | os.PathLike[str]) -> dict[str, str]:
    data = read_json_file(path, "voice aliases file")
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise ConfigError("voice aliases file must be a JSON object of alias -> voice strings")
    return {k.lower(): v for k, v in data.items()}


def read_pools_file(path: str | os.PathLike[str]) -> tuple[list[PoolConfig], str | None]:
    """The pools and the default pool's name from a `--pools-file`."""
    data = read_json_file(path, "pools file")
    if not isinstance(data, dict) or not isinstance(data.get("pools"), list):
        raise ConfigError('pools file must be a JSON object {"pools": [...], "default_pool": ...}')
    unknown = sorted(set(data) - {"pools", "default_pool"})
    if unknown:
        raise ConfigError(f"pools file: unknown keys {unknown}")
    try:
        pools = [PoolConfig.from_dict(item) for item in data["pools"]]
    except PoolConfigError as exc:
        raise ConfigError(f"pools file {str(path)!r}: {exc}") from None
    default = data.get("default_pool")
    if default is not None and not isinstance(default, str):
        raise ConfigError("pools file: default_pool must be a pool name")
    return pools, default


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
    src.add_argument("--pools-file", metavar="FILE",
                     help="several model pools (JSON; docs/gateway.md, 'Model pools') instead "
                     "of --workers/--discover")
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
    p.add_argument("--voice-aliases", metavar="FILE",
                   help="JSON object alias -> model voice, over the built-in OpenAI/Groq table")
    p.add_argument("--model-name", help="the served model's name for the OpenAI/Groq `model` "
                   "parameter (default: what the workers report)")
    p.add_argument("--default-voice", help="voice used when a request names none")
    p.add_argument("--allowed-origins", default="", metavar="ORIGIN,ORIGIN",
                   help="web origins, besides the gateway's own, whose pages may open a "
                   "WebSocket with a key the browser holds")
    p.add_argument("--worker-token-file", metavar="FILE",
                   help=f"the internal token workers require (default: ${INTERNAL_TOKEN_ENV})")
    return p


def config_from_args(argv: list[str], environ: dict[str, str] | None = None) -> GatewayConfig:
    """Parse the command line; raises `ConfigError` with an operator-facing message."""
    environ = dict(os.environ if environ is None else environ)
    args = build_parser().parse_args(argv)
    workers = [u.strip().rstrip("/") for u in (args.workers or "").split(",") if u.strip()]
    if args.workers is not None and not workers:
        raise ConfigError("--workers needs at least one URL")
    pools, default_pool = read_pools_file(args.pools_file) if args.pools_file else ([], None)
    if pools and (args.voice_aliases or args.model_name or args.default_voice):
        raise ConfigError("with --pools-file, set model, voice aliases and default voice per "
                          "pool in the file")
    env_keys = read_api_keys(None, environ.get(API_KEYS_ENV))
    return GatewayConfig(
        host=args.host,
        port=args.port,
        workers=workers,
        discover=args.discover,
        api_keys=read_api_keys(args.api_keys_file, None) + env_keys,
        api_keys_file=args.api_keys_file,
        env_api_keys=env_keys,
        allowed_origins=[o.strip() for o in args.allowed_origins.split(",") if o.strip()],
        worker_token=read_worker_token(args.worker_token_file, environ),
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
        model_name=args.model_name,
        pools=pools,
        default_pool=default_pool,
    )
