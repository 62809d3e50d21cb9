"""The gateway's plain parts, called directly: keys, limits, breaker, routing, discovery,
voices, configuration, encoders, line splitting."""

from __future__ import annotations

import base64
import io
import random
import struct

import av
import pytest
from kubernetes.client import (DiscoveryV1EndpointPort, V1Endpoint, V1EndpointConditions,
                               V1EndpointSlice, V1ObjectMeta, V1ObjectReference)

from orpheus_gateway.auth import KeyLimiter, KeyStore, TokenBucket, presented_key
from orpheus_gateway.breakers import WorkerBreakers
from orpheus_gateway.browser import OriginPolicy
from orpheus_gateway.config import ConfigError, GatewayConfig, config_from_args
from orpheus_gateway.discovery import ready_endpoints
from orpheus_gateway.encoders import FORMATS, make_encoder, wav_header
from orpheus_gateway.keyfile import KeyFileWatcher
from orpheus_gateway.relay import LineReader
from orpheus_gateway.worker_pool import WorkerPool
from orpheus_tts.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from orpheus_gateway.voice_map import OPENAI_VOICES, VoiceMap
from orpheus_tts import protocol as p
from tests.support.clock import Clock


# --- keys ----------------------------------------------------------------------------------
def test_keystore_identifies_only_configured_keys_and_never_keeps_them():
    store = KeyStore(["alpha-key", "beta-key"])
    a, b = store.identify("alpha-key"), store.identify("beta-key")
    assert a and b and a != b
    assert store.identify("alpha-keY") is None
    assert store.identify("") is None and store.identify(None) is None
    assert "alpha" not in repr(vars(store)) and "beta" not in repr(vars(store))
    assert a not in "alpha-key"


def test_keystore_without_keys_is_auth_off():
    assert KeyStore([]).enabled is False
    assert KeyStore([]).identify(None) == "anonymous"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_presented_key_sources():
    assert presented_key({"authorization": "Bearer k1"}) == "k1"
    assert presented_key({"authorization": "bearer  k1 "}) == "k1"
    assert presented_key({"x-api-key": "k2"}) == "k2"
    assert presented_key({"authorization": "Basic abc"}) is None  # not base64 of user:password
    assert presented_key({"authorization": "Basic " + _b64("anyone:k4")}) == "k4"
    assert presented_key({"authorization": "Basic " + _b64("k5:")}) == "k5"  # Stripe's style
    assert presented_key({"authorization": "Basic " + _b64("no-colon")}) is None
    assert presented_key({"authorization": "Basic " + _b64(":")}) is None
    assert presented_key({"authorization": "Basic //79"}) is None  # not UTF-8
    assert presented_key({}, {"api_key": "k3"}) == "k3"
    assert presented_key({}, None) is None


# --- limits --------------------------------------------------------------------------------
def test_token_bucket_refills_at_its_rate():
    clock = Clock()
    bucket = TokenBucket(2, 1.0, clock)
    assert bucket.take() == 0 and bucket.take() == 0
    assert bucket.take() == pytest.approx(1.0)
    clock.t += 0.5
    assert bucket.take() == pytest.approx(0.5)
    clock.t += 0.5
    assert bucket.take() == 0


def test_limiter_rpm_then_retry_after():
    clock = Clock()
    rejected: list[str] = []
    limiter = KeyLimiter(rpm=3, max_streams=0, clock=clock, on_reject=rejected.append)
    for _ in range(3):
        limiter.admit("k").release()
    with pytest.raises(p.RequestError) as exc:
        limiter.admit("k")
    assert exc.value.status == 429 and exc.value.code == p.ErrorCode.RATE_LIMITED
    assert exc.value.headers()["Retry-After"] == "20"  # one token per 20 s at 3 rpm
    assert rejected == ["rpm"]
    limiter.admit("other").release()  # per key
    clock.t += 20
    limiter.admit("k").release()


def test_limiter_concurrent_streams_and_idempotent_release():
    limiter = KeyLimiter(rpm=0, max_streams=2)
    s1, s2 = limiter.admit("k"), limiter.admit("k")
    with pytest.raises(p.RequestError) as exc:
        limiter.admit("k")
    assert exc.value.status == 429 and "Retry-After" in exc.value.headers()
    s1.release()
    s1.release()  # idempotent: does not free a second slot
    assert limiter.active_streams("k") == 1
    s3 = limiter.admit("k")
    with pytest.raises(p.RequestError):
        limiter.admit("k")
    s2.release(), s3.release()
    assert limiter.active_streams("k") == 0


# --- breaker -------------------------------------------------------------------------------
def test_breaker_opens_half_opens_and_closes():
    clock = Clock()
    br = CircuitBreaker(failures=2, reset_s=5, clock=clock)
    br.failure()
    assert br.state == CLOSED and br.available()
    br.failure()
    assert br.state == OPEN and not br.available()
    clock.t += 5
    assert br.state == HALF_OPEN and br.available()
    br.acquire()  # the one trial
    assert not br.available()
    br.failure()  # trial failed: open again, for a full reset period
    assert br.state == OPEN
    clock.t += 5
    br.acquire()
    br.success()
    assert br.state == CLOSED and br.available()


def test_breaker_success_resets_failure_count():
    br = CircuitBreaker(failures=2, reset_s=5, clock=Clock())
    br.failure(), br.success(), br.failure()
    assert br.state == CLOSED


# --- routing -------------------------------------------------------------------------------
def make_pool(n: int, clock: Clock | None = None) -> WorkerPool:
    pool = WorkerPool(breaker_failures=1, breaker_reset_s=5, clock=clock or Clock(),
                      rng=random.Random(7))
    pool.set_workers([(f"http://w{i}:8000", None) for i in range(n)])
    return pool


def test_pick_prefers_the_less_loaded_of_two():
    pool = make_pool(2)
    busy, idle = list(pool)
    busy.update_hints(queue_depth=5, capacity=4)
    idle.update_hints(capacity=4)
    assert all(pool.pick() is idle for _ in range(50))
    idle.local_inflight = 8  # our own streams count even before hints catch up
    assert pool.pick() is busy


def test_pick_spreads_over_equals_and_uses_capacity():
    pool = make_pool(3)
    counts = {w.url: 0 for w in pool}
    for _ in range(300):
        counts[pool.pick().url] += 1
    assert min(counts.values()) > 50
    big, small, _ = list(pool)
    big.update_hints(inflight=4, capacity=16)  # 25 % busy
    small.update_hints(inflight=2, capacity=2)  # full
    pool.set_workers([(big.url, None), (small.url, None)])
    assert all(pool.pick() is big for _ in range(20))


def test_pick_skips_unready_unreachable_cooling_and_open_workers():
    clock = Clock()
    pool = make_pool(4, clock)
    a, b, c, d = list(pool)
    a.ready = False
    b.reachable = False
    c.cooldown_until = clock.t + 3
    d.breaker.failure()  # threshold 1: open
    assert pool.pick() is b  # an unreachable worker only when nothing else is left
    assert pool.pick(exclude={b.url}) is None
    assert pool.retry_after_s() == pytest.approx(3)
    clock.t += 3
    assert all(pool.pick(exclude={b.url}) is c for _ in range(5))
    assert pool.pick(exclude={b.url, c.url}) is None
    clock.t += 2  # d's breaker half-open: exactly one trial
    assert pool.pick(exclude={b.url, c.url}) is d
    assert pool.pick(exclude={b.url, c.url}) is None


def test_a_lease_is_the_one_owner_of_a_workers_count_and_verdict():
    clock = Clock()
    suspected = []
    pool = WorkerPool(breaker_failures=1, breaker_reset_s=5, clock=clock, rng=random.Random(1),
                      on_suspect=suspected.append)
    pool.set_workers([("http://w0:8000", None)])
    (w,) = list(pool)
    w.update_hints(inflight=4)
    lease = pool.lease()
    assert lease.worker is w and w.local_inflight == 1 and pool.local_inflight() == 1
    lease.accepted()
    lease.note_hints(p.LoadHints(queue_depth=2, inflight=5, worker_id="pod-a"))
    assert (w.hint_queue_depth, w.hint_inflight, w.name) == (2, 5, "pod-a")
    lease.succeeded()
    lease.failed(p.ErrorCode.ENGINE_ERROR)  # a second verdict is ignored: one per lease
    lease.release()
    assert w.local_inflight == 0 and w.hint_inflight == 4 and w.breaker.state == CLOSED

    busy = pool.lease()
    busy.cool_down(3)
    busy.failed(p.ErrorCode.OVERLOADED)  # busy is not broken
    assert w.breaker.state == CLOSED and pool.lease() is None  # cooling down
    clock.t += 3
    lost = pool.lease()
    lost.failed(p.ErrorCode.UPSTREAM_LOST)  # an endpoint fault: opens (threshold 1), suspected
    assert w.breaker.state == OPEN and suspected == [w] and not w.reachable
    assert w.local_inflight == 0 and w.hint_inflight == 4  # never accepted: hint untouched
    clock.t += 5
    trial = pool.lease()  # half-open: this lease holds the one trial
    assert trial is not None and pool.lease() is None
    trial.release()  # no verdict: the trial is given back
    assert pool.lease() is not None


def test_set_workers_keeps_state_of_known_and_drops_gone():
    pool = make_pool(2)
    first = pool.get("http://w0:8000")
    first.local_inflight = 3
    pool.set_workers([("http://w0:8000", None), ("http://w9:8000", "pod-9")])
    assert pool.get("http://w0:8000") is first and first.local_inflight == 3
    assert pool.get("http://w1:8000") is None
    assert pool.get("http://w9:8000").id == "pod-9"


# --- discovery -----------------------------------------------------------------------------
def _slice(name: str, endpoints: list[V1Endpoint], port_name: str = "http") -> V1EndpointSlice:
    return V1EndpointSlice(
        address_type="IPv4", metadata=V1ObjectMeta(name=name), endpoints=endpoints,
        ports=[DiscoveryV1EndpointPort(name="metrics", port=9090),
               DiscoveryV1EndpointPort(name=port_name, port=8000)])


def _ep(ip: str, ready: bool | None, pod: str, terminating: bool | None = None) -> V1Endpoint:
    return V1Endpoint(addresses=[ip], conditions=V1EndpointConditions(
        ready=ready, terminating=terminating), target_ref=V1ObjectReference(kind="Pod", name=pod))


def test_ready_endpoints_from_slices():
    slices = [
        _slice("svc-a", [_ep("10.0.0.1", True, "w-1"), _ep("10.0.0.2", False, "w-2")]),
        _slice("svc-b", [_ep("10.0.0.3", None, "w-3"),
                         _ep("10.0.0.4", False, "w-4", terminating=True)]),
    ]
    assert ready_endpoints(slices) == [("http://10.0.0.1:8000", "w-1"),
                                       ("http://10.0.0.3:8000", "w-3")]


def test_ready_endpoints_accepts_watch_dicts_and_falls_back_to_first_port():
    raw = {"metadata": {"name": "s"}, "ports": [{"name": "web", "port": 7000}],
           "endpoints": [{"addresses": ["fd00::1"], "conditions": {"ready": True},
                          "targetRef": {"name": "w-6"}}]}
    assert ready_endpoints([raw]) == [("http://[fd00::1]:7000", "w-6")]


# --- voices --------------------------------------------------------------------------------
def test_every_openai_voice_has_an_alias_and_resolves():
    vm = VoiceMap()
    served = ["tara", "leah", "jess", "leo", "dan", "mia", "zac", "zoe"]
    for name in OPENAI_VOICES:
        assert vm.resolve(name, served) in served
        assert vm.resolve(name.upper(), served) in served
    assert vm.resolve("tara", served) == "tara"
    assert vm.resolve(None, served) is None
    assert VoiceMap(default_voice="leo").resolve(None, served) == "leo"


def test_unknown_voice_lists_the_valid_ones():
    with pytest.raises(p.RequestError) as exc:
        VoiceMap().resolve("bogus", ["tara", "leo"])
    assert exc.value.status == 400 and exc.value.code == p.ErrorCode.UNKNOWN_VOICE
    assert "tara" in exc.value.message and exc.value.param == "voice"
    with pytest.raises(p.RequestError) as exc:
        VoiceMap({"alloy": "nobody"}).resolve("alloy", ["tara"])
    assert "alias" in exc.value.message
    # Voices not yet known (no worker polled): passed on for the worker to judge.
    assert VoiceMap().resolve("bogus", []) == "bogus"


# --- configuration -------------------------------------------------------------------------
def test_refuses_to_start_without_keys_unless_no_auth(tmp_path):
    with pytest.raises(ConfigError, match="--no-auth"):
        config_from_args(["--workers", "http://a:1"], environ={})
    assert config_from_args(["--workers", "http://a:1", "--no-auth"], environ={}).auth_enabled \
        is False
    keys = tmp_path / "keys"
    keys.write_text("# ops keys\nkey-one\n\n  key-two  # rotated 2026\n")
    cfg = config_from_args(["--workers", "http://a:1,http://b:2/", "--api-keys-file", str(keys)],
                           environ={"ORPHEUS_API_KEYS": "key-three, key-four"})
    assert cfg.api_keys == ["key-one", "key-two", "key-three", "key-four"]
    assert cfg.workers == ["http://a:1", "http://b:2"] and cfg.auth_enabled
    # keys configured + --no-auth: auth stays on
    assert config_from_args(["--workers", "http://a:1", "--no-auth"],
                            environ={"ORPHEUS_API_KEYS": "k"}).auth_enabled


def test_config_errors_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="NAMESPACE/SERVICE"):
        config_from_args(["--discover", "just-a-name", "--no-auth"], environ={})
    with pytest.raises(ConfigError, match="http://"):
        config_from_args(["--workers", "a:1", "--no-auth"], environ={})
    aliases = tmp_path / "aliases.json"
    aliases.write_text('{"Alloy": "leo"}')
    cfg = config_from_args(["--discover", "tts/workers", "--no-auth", "--voice-aliases",
                            str(aliases), "--default-voice", "tara"], environ={})
    assert cfg.voice_aliases == {"alloy": "leo"} and cfg.default_voice == "tara"
    aliases.write_text("[1]")
    with pytest.raises(ConfigError, match="alias"):
        config_from_args(["--workers", "http://a:1", "--no-auth", "--voice-aliases",
                          str(aliases)], environ={})
    with pytest.raises(ConfigError, match="poll_timeout_s"):
        GatewayConfig(workers=["http://a:1"], no_auth=True, poll_timeout_s=0)


def test_main_exits_2_with_the_message(capsys):
    from orpheus_gateway.__main__ import main

    assert main(["--workers", "http://a:1"]) == 2
    assert "--no-auth" in capsys.readouterr().err


# --- encoders ------------------------------------------------------------------------------
def test_wav_header_streams_with_unknown_sizes():
    h = wav_header()
    assert len(h) == 44 and h[:4] == b"RIFF" and h[8:12] == b"WAVE"
    assert struct.unpack("<I", h[4:8])[0] == 0xFFFFFFFF
    assert struct.unpack("<I", h[40:44])[0] == 0xFFFFFFFF
    assert struct.unpack("<I", h[24:28])[0] == p.SAMPLE_RATE


@pytest.mark.parametrize("fmt", FORMATS)
def test_encoders_stream_chunk_by_chunk_and_decode(fmt):
    enc = make_encoder(fmt)
    pcm = (b"\x00\x10\x00\xf0" * 1200)  # 2400 samples per chunk
    parts = [enc.encode(pcm) for _ in range(10)]
    parts.append(enc.finish())
    data = b"".join(parts)
    expected = 24_000
    if fmt != "pcm":  # audio leaves before the end: it streams
        assert sum(len(x) for x in parts[:-1]) > 0
    if fmt == "pcm":
        assert len(data) == expected * 2
        return
    raw = {"format": "mulaw", "options": {"sample_rate": "24000"}} if fmt == "mulaw" else {}
    with av.open(io.BytesIO(data), **raw) as container:
        frames = list(container.decode(audio=0))
        rate = frames[0].sample_rate
        decoded = sum(f.samples for f in frames)
    seconds = decoded / rate
    assert seconds == pytest.approx(1.0, abs=0.08), (fmt, decoded, rate)


# --- logs ----------------------------------------------------------------------------------
def test_polls_and_probes_are_debug_lines_in_the_access_log(caplog):
    import logging

    from orpheus_gateway.logs import QuietPolls

    access = logging.getLogger("test.access")
    access.addFilter(QuietPolls())
    fmt = '%s - "%s %s HTTP/%s" %d'
    with caplog.at_level(logging.INFO, logger="test.access"):
        for path in ("/v1/system", "/metrics", "/healthz", "/readyz", "/v1/tts/stream"):
            access.info(fmt, "127.0.0.1:5", "GET", path, "1.1", 200)
    assert [r.args[2] for r in caplog.records] == ["/v1/tts/stream"]
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="test.access"):
        access.info(fmt, "127.0.0.1:5", "GET", "/v1/system", "1.1", 200)
    assert [r.levelname for r in caplog.records] == ["DEBUG"]


# --- lines ---------------------------------------------------------------------------------
async def test_line_reader_splits_without_decoding():
    async def chunks():
        for part in [b'{"type":"chunk","seq":0', b',"audio":"AA==","samples":1}\n\n{"ty',
                     b'pe":"eos"}\n', b'{"type":"x"}']:
            yield part

    reader = LineReader(chunks())
    lines = [await reader.readline() for _ in range(4)]
    assert lines[0].startswith(b'{"type":"chunk"') and p.line_type(lines[0]) == "chunk"
    assert p.line_type(lines[1]) == "eos"
    assert lines[2] == b'{"type":"x"}\n' and lines[3] is None


def test_default_deadline_is_configurable_and_must_be_positive():
    base = ["--workers", "http://a:1", "--no-auth"]
    assert config_from_args(base, environ={}).default_timeout_s == 60.0
    assert config_from_args([*base, "--default-timeout-s", "180"], environ={}).default_timeout_s == 180.0
    with pytest.raises(ConfigError, match="--default-timeout-s"):
        config_from_args([*base, "--default-timeout-s", "0"], environ={})


# --- hardening (issue 12) ------------------------------------------------------------------------
def test_one_key_s_stream_failures_open_its_breaker_only_until_a_second_key_fails():
    clock = Clock()
    b = WorkerBreakers(failures=2, reset_s=5, clock=clock)
    for _ in range(3):
        b.stream_failure("key-b")
    assert not b.available("key-b") and b.available("key-a") and b.available()
    assert b.state == OPEN  # the only key that used it sees it open
    b.success("key-a")
    assert b.state == CLOSED and not b.available("key-b")
    b.stream_failure("key-c")  # a second key failing here: now the worker takes the blame
    b.stream_failure("key-c")
    b.stream_failure("key-b")
    assert b.worker.state == OPEN and not b.available("key-a")
    clock.t += 5
    assert b.available("key-a")  # half-open: one trial
    b.acquire("key-a")
    assert not b.available("key-d")
    b.success("key-a")
    assert b.worker.state == CLOSED and b.available("key-d")


def test_connection_failures_open_the_worker_breaker_for_every_key():
    b = WorkerBreakers(failures=2, reset_s=5, clock=Clock())
    b.failure("key-a")
    b.failure("key-a")
    assert not b.available("key-b") and b.state == OPEN


def test_a_concurrency_refusal_spends_no_rate_token():
    clock = Clock()
    limiter = KeyLimiter(rpm=3, max_streams=1, clock=clock)
    slot = limiter.admit("k")
    for _ in range(10):
        with pytest.raises(p.RequestError, match="concurrent"):
            limiter.admit("k")
    slot.release()
    limiter.admit("k").release()
    limiter.admit("k").release()
    with pytest.raises(p.RequestError, match="per minute"):
        limiter.admit("k")


@pytest.mark.parametrize("origin,host,allowed", [
    (None, "gw:8000", True),  # not a browser
    ("http://gw:8000", "gw:8000", True),  # the playground's own page
    ("https://gw", "gw", True),  # TLS ended in front of the gateway
    ("http://gw:8001", "gw:8000", False),
    ("http://evil.example", "gw:8000", False),
    ("https://app.example", "gw:8000", True),  # configured
    ("https://app.example:443", "gw:8000", True),
    ("null", "gw:8000", False),
])
def test_origin_policy(origin, host, allowed):
    headers = {"host": host, **({"origin": origin} if origin else {})}
    assert OriginPolicy(["https://app.example"]).allows(headers) is allowed


def test_key_file_watcher_swaps_keys_and_never_empties_them(tmp_path):
    path = tmp_path / "keys"
    path.write_text("old-key\n")
    store = KeyStore(["old-key", "env-key"])
    watcher = KeyFileWatcher(path, ["env-key"], store.replace)
    watcher.prime()
    assert watcher.check() is False
    path.write_text("# rotated\nnew-key\n")
    assert watcher.check() is True
    assert store.identify("old-key") is None and store.identify("new-key")
    assert store.identify("env-key")  # keys from the environment stay
    path.write_text("")
    assert watcher.check() is False and store.identify("new-key")
    path.unlink()
    assert watcher.check() is False and store.identify("new-key")
