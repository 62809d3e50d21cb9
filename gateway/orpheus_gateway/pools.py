"""Model pools: several Orpheus models (English, Arabic-Saudi, ...) behind one gateway.

A pool is one model's workers with everything the gateway keeps per model: their discovery,
their choice and breakers (`WorkerPool`), the streams waiting for one of them (`Upstream`),
the model's names, voices and aliases, and its own time-to-first-audio window. A burst on one
model therefore queues only on that model's workers; another model's requests never wait
behind it.

Which pool serves a request (`PoolRouter.route`; the first rule that applies wins):

1. **`model`** (OpenAI/Groq's field, the v1 request's and the WebSocket `speak`'s optional one)
   naming a pool's model: that pool, even if the voice belongs to another (then the voice is
   a 400 `unknown_voice` for that model). OpenAI's generic names (`tts-1`, `gpt-4o-mini-tts`,
   `orpheus`) name no model in particular and fall through to rule 2. Any other name is a 400
   `model_not_found` listing the served ones.
2. **`voice`** that a pool serves under that name (`noura`, `tara`): that pool; a name several
   pools serve is a 400 that lists their models and asks for `model`. Else a voice that is an
   *alias* in some pool (OpenAI's `alloy`, Groq's `aisha`): the default pool if it is one of
   them (so an OpenAI client that sends `tts-1`/`alloy` keeps working), else the one pool that
   has it, else a 400 listing them. A voice no pool has is a 400 `unknown_voice` listing each
   model's voices (while some pool's voices are still unknown, the default pool takes it and
   its workers judge).
3. The **default pool**.

With one pool every request goes to it, and `model` is checked as it always was
(`ModelNames.check`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from orpheus_tts import protocol as p
from orpheus_tts.ttfa_window import TtfaWindow

from .discovery import EndpointSliceDiscovery, StaticDiscovery, WorkerList, discovery_for
from .models import OPENAI_MODEL_NAMES, ModelNames
from .relay import Upstream
from .voice_map import VoiceMap
from .worker_pool import Worker, WorkerPool

DEFAULT_POOL = "default"
# A pool's name is a metrics label value and a Kubernetes name part: keep it short and plain.
POOL_NAME_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")
MAX_POOLS = 16  # bounds the `pool` label's cardinality


class PoolConfigError(ValueError):
    """A pool the gateway refuses to start with (the message names it)."""


@dataclass
class PoolConfig:
    name: str = DEFAULT_POOL
    model: str | None = None  # the model's public name; None: what its workers report
    workers: list[str] = field(default_factory=list)  # static worker base URLs
    discover: str | None = None  # "NAMESPACE/SERVICE": its ready EndpointSlice endpoints
    voices: list[str] = field(default_factory=list)  # known before the workers report theirs
    voice_aliases: dict[str, str] | None = None  # over the built-in OpenAI/Groq table
    default_voice: str | None = None

    def validate(self) -> None:
        where = f"pool {self.name!r}"
        if not POOL_NAME_PATTERN.match(self.name):
            raise PoolConfigError(f"{where}: a pool name is 1-32 of a-z, 0-9 and '-'")
        if bool(self.workers) == bool(self.discover):
            raise PoolConfigError(f"{where}: give exactly one of workers (URLs) or discover "
                                  "(NAMESPACE/SERVICE)")
        if self.discover is not None:
            ns, _, svc = self.discover.partition("/")
            if not ns or not svc or "/" in svc:
                raise PoolConfigError(f"{where}: discover wants NAMESPACE/SERVICE, "
                                      f"got {self.discover!r}")
        for url in self.workers:
            if not url.startswith(("http://", "https://")):
                raise PoolConfigError(f"{where}: worker URL must start with http:// or "
                                      f"https://: {url!r}")

    @classmethod
    def from_dict(cls, data: object) -> "PoolConfig":
        if not isinstance(data, dict):
            raise PoolConfigError("each pool is a JSON object")
        known = {"name", "model", "workers", "discover", "voices", "voice_aliases",
                 "default_voice"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PoolConfigError(f"pool {data.get('name')!r}: unknown keys {unknown}")
        aliases = data.get("voice_aliases")
        if aliases is not None and not (isinstance(aliases, dict) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in aliases.items())):
            raise PoolConfigError(f"pool {data.get('name')!r}: voice_aliases must map "
                                  "strings to strings")
        for key in ("workers", "voices"):
            value = data.get(key, [])
            if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                raise PoolConfigError(f"pool {data.get('name')!r}: {key} must be a list of "
                                      "strings")
        for key in ("name", "model", "discover", "default_voice"):
            if data.get(key) is not None and not isinstance(data[key], str):
                raise PoolConfigError(f"pool {data.get('name')!r}: {key} must be a string")
        pool = cls(
            name=data.get("name") or DEFAULT_POOL, model=data.get("model"),
            workers=[u.strip().rstrip("/") for u in data.get("workers", []) if u.strip()],
            discover=data.get("discover"), voices=[v.lower() for v in data.get("voices", [])],
            voice_aliases={k.lower(): v for k, v in aliases.items()} if aliases else None,
            default_voice=data.get("default_voice"))
        pool.validate()
        return pool


def validate_pools(pools: list[PoolConfig], default_pool: str | None) -> str:
    """Check a gateway's pools together; return the default pool's name."""
    if not pools:
        raise PoolConfigError("no pool configured")
    if len(pools) > MAX_POOLS:
        raise PoolConfigError(f"at most {MAX_POOLS} pools")
    names = [pc.name for pc in pools]
    if len(set(names)) != len(names):
        raise PoolConfigError(f"pool names must be unique: {names}")
    for pc in pools:
        pc.validate()
    if len(pools) > 1:
        unnamed = [pc.name for pc in pools if not pc.model]
        if unnamed:
            raise PoolConfigError(f"with several pools each names its model; missing in "
                                  f"{unnamed}")
        models = [pc.model for pc in pools]
        if len(set(models)) != len(models):
            raise PoolConfigError(f"two pools serve the same model name: {models}")
        generic = [m for m in models if m in OPENAI_MODEL_NAMES]
        if generic:
            raise PoolConfigError(f"{generic} name no model in particular; give pools their "
                                  "own model names")
    default = default_pool or pools[0].name
    if default not in names:
        raise PoolConfigError(f"default pool {default!r} is not one of {names}")
    return default


class Pool:
    """One model's workers and what the gateway keeps for them."""

    def __init__(self, config: PoolConfig, *, breaker_failures: int, breaker_reset_s: float,
                 ttfa_window_s: float, on_suspect: Callable[[Worker], None] = lambda _w: None,
                 created: int = 0, default: bool = False,
                 discovery: StaticDiscovery | EndpointSliceDiscovery | None = None):
        self.config = config
        self.name = config.name
        self.default = default
        self.voices = VoiceMap(config.voice_aliases, config.default_voice)
        self.models = ModelNames(config.model, created=created)
        self.workers = WorkerPool(breaker_failures, breaker_reset_s, on_suspect=on_suspect)
        self.ttfa_window = TtfaWindow(ttfa_window_s)
        self.discovery = discovery or discovery_for(config.workers, config.discover)
        self.upstream: Upstream | None = None  # set when the gateway starts

    def __repr__(self) -> str:
        return f"Pool({self.name!r}, model={self.config.model!r})"

    async def start(self, upstream: Upstream, on_workers: Callable[[WorkerList], None]) -> None:
        self.upstream = upstream
        await self.discovery.start(on_workers)

    async def stop(self) -> None:
        await self.discovery.stop()

    # --- what it serves -------------------------------------------------------------------
    def worker_models(self) -> list[str]:
        return sorted({w.model for w in self.workers if w.model})

    def model_names(self) -> list[str]:
        """The names `model` may take for this pool (not OpenAI's generic ones)."""
        return [self.config.model] if self.config.model else self.worker_models()

    def known_voices(self) -> list[str]:
        voices = set(self.config.voices)
        for w in self.workers:
            voices.update(w.voices)
        return sorted(voices)

    def serves_voice(self, voice: str) -> bool:
        return self.voices.serves(voice, self.known_voices())

    # --- state ----------------------------------------------------------------------------
    def queue_depth(self) -> int:
        own = self.upstream.waiting if self.upstream is not None else 0
        return own + sum(w.hint_queue_depth for w in self.workers if w.reachable)

    def ready(self) -> bool:
        return bool(self.workers.eligible())

    def capacity(self) -> int | None:
        capacities = [w.capacity for w in self.workers if w.ready and w.reachable and w.capacity]
        return sum(capacities) if capacities else None

    def inflight(self) -> int:
        return sum(max(w.local_inflight, w.hint_inflight) for w in self.workers
                   if w.ready and w.reachable)

    def state(self) -> p.PoolState:
        p50, p95 = self.ttfa_window.percentiles()
        workers = list(self.workers)
        return p.PoolState(
            name=self.name, models=self.model_names(), default=self.default,
            ready=self.ready(), queue_depth=self.queue_depth(), inflight=self.inflight(),
            capacity=self.capacity(), ttfa_p50_ms=p50, ttfa_p95_ms=p95,
            voices=self.known_voices(), workers=len(workers),
            workers_ready=len(self.workers.eligible()))


class PoolRouter:
    """Picks the pool of a request (the rules are in the module's docstring)."""

    def __init__(self, pools: list[Pool], default: str):
        self.pools = pools
        self.by_name = {pool.name: pool for pool in pools}
        self.default = self.by_name[default]

    def __iter__(self):
        return iter(self.pools)

    def route(self, model: str | None, voice: str | None) -> Pool:
        if len(self.pools) == 1:
            pool = self.pools[0]
            if model is not None:
                pool.models.check(model, pool.worker_models())
            return pool
        if model is not None and model not in OPENAI_MODEL_NAMES:
            for pool in self.pools:
                if model in pool.model_names():
                    return pool
            raise p.RequestError(
                p.ErrorCode.UNKNOWN_MODEL,
                f"Model '{model}' is not served here. Served models: "
                f"{', '.join(self.served_models())}.", param="model")
        if voice:
            by_name = [pool for pool in self.pools if voice.lower() in pool.known_voices()]
            if len(by_name) > 1:
                names = ", ".join(pool.model_names()[0] for pool in by_name)
                raise p.RequestError(
                    p.ErrorCode.INVALID_REQUEST,
                    f"Voice '{voice}' is served by several models ({names}); name one in "
                    "'model'.", param="model")
            if by_name:
                return by_name[0]
            by_alias = [pool for pool in self.pools if pool.serves_voice(voice)]
            if self.default in by_alias or len(by_alias) == 1:
                return self.default if self.default in by_alias else by_alias[0]
            if by_alias:
                names = ", ".join(pool.model_names()[0] for pool in by_alias)
                raise p.RequestError(
                    p.ErrorCode.INVALID_REQUEST,
                    f"Voice '{voice}' is an alias in several models ({names}); name one in "
                    "'model'.", param="model")
            if all(pool.known_voices() for pool in self.pools):
                by_model = "; ".join(f"{pool.model_names()[0]}: {', '.join(pool.known_voices())}"
                                     for pool in self.pools)
                raise p.RequestError(p.ErrorCode.UNKNOWN_VOICE,
                                     f"Unknown voice '{voice}'. Voices by model: {by_model}.",
                                     param="voice")
        return self.default

    def served_models(self) -> list[str]:
        """Every pool's model names (default pool first), then OpenAI's generic names."""
        ordered = [self.default, *(pool for pool in self.pools if pool is not self.default)]
        names = [name for pool in ordered for name in pool.model_names()]
        return list(dict.fromkeys([*names, *OPENAI_MODEL_NAMES]))

    def models_listing(self, created: int) -> dict:
        """OpenAI's `GET /v1/models` list over every pool."""
        if len(self.pools) == 1:
            pool = self.pools[0]
            return pool.models.listing(pool.worker_models())
        return {"object": "list", "data": [
            {"id": name, "object": "model", "created": created, "owned_by": "orpheus-tts"}
            for name in self.served_models()]}

    def voices_listing(self) -> dict:
        """`GET /v1/voices`: the default pool's listing as before, each voice with the model
        that serves it, and a `pools` entry per pool."""
        listing = self.default.voices.listing(self.default.known_voices())
        data, voices = [], set()
        for pool in self.pools:
            model = (pool.model_names() or [None])[0]
            for v in pool.known_voices():
                data.append({"id": v, "object": "voice", "model": model, "pool": pool.name})
                voices.add(v)
        listing["data"] = data
        listing["voices"] = sorted(voices)
        listing["pools"] = [
            {"name": pool.name, "models": pool.model_names(), "default": pool is self.default,
             "voices": pool.known_voices(), "aliases": dict(sorted(pool.voices.aliases.items())),
             "default_voice": pool.voices.default_voice}
            for pool in self.pools]
        return listing
