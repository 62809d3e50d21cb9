"""Model pools: one gateway over an English and an Arabic pool of (fake) workers.

The routing rules (`orpheus_gateway.pools`) are tested on `PoolRouter` directly, then through
a gateway on every API: the model picks the pool, else the voice, else the default pool; each
pool's worker serves its own requests (the `X-Orpheus-Worker` header says which); a pool whose
workers are all busy does not hold up the other's requests.
"""

from __future__ import annotations

import json
import threading

import httpx
import pytest
from websockets.sync.client import connect

from orpheus_gateway.config import ConfigError, GatewayConfig, config_from_args
from orpheus_gateway.pools import Pool, PoolConfig, PoolRouter
from orpheus_tts import protocol as p
from tests.gateway.conftest import API_KEY, auth
from tests.support.fake_server import Behaviour

ENGLISH = "canopylabs/orpheus-3b-0.1-ft"
ARABIC = "canopylabs/orpheus-arabic-saudi"
ARABIC_VOICES = ("fahad", "sultan", "lulwa", "noura")
ARABIC_ALIASES = {"alloy": "noura"}  # Groq's abdullah and aisha are built in
ENGLISH_VOICES = ("tara", "leah", "jess", "leo", "dan", "mia", "zac", "zoe")


def pool(name: str, model: str, voices: tuple[str, ...], **kw) -> Pool:
    cfg = PoolConfig(name=name, model=model, workers=["http://127.0.0.1:9"], voices=list(voices),
                     **kw)
    return Pool(cfg, breaker_failures=3, breaker_reset_s=1, ttfa_window_s=60)


@pytest.fixture
def router() -> PoolRouter:
    return PoolRouter([pool("english", ENGLISH, ENGLISH_VOICES),
                       pool("arabic", ARABIC, ARABIC_VOICES, voice_aliases=ARABIC_ALIASES)],
                      default="english")


def refusal(fn, *args) -> p.RequestError:
    with pytest.raises(p.RequestError) as info:
        fn(*args)
    return info.value


def test_model_wins_then_voice_then_default(router):
    assert router.route(ARABIC, "tara").name == "arabic"  # the model wins over the voice
    assert router.route(ENGLISH, None).name == "english"
    assert router.route(None, "noura").name == "arabic"
    assert router.route("tts-1", "Noura").name == "arabic"  # a generic model name: by voice
    assert router.route(None, "aisha").name == "arabic"  # an alias only the Arabic pool has
    assert router.route(None, "alloy").name == "english"  # an alias in both: the default pool
    assert router.route(None, "autumn").name == "english"  # Groq English, built-in alias
    assert router.route(None, None).name == "english"


def test_unknown_model_and_voice_list_the_choices(router):
    err = refusal(router.route, "canopylabs/orpheus-french", "tara")
    assert err.code is p.ErrorCode.UNKNOWN_MODEL and err.param == "model"
    assert ENGLISH in err.message and ARABIC in err.message
    err = refusal(router.route, None, "nobody")
    assert err.code is p.ErrorCode.UNKNOWN_VOICE and "noura" in err.message and "tara" in err.message


def test_a_voice_in_two_pools_must_name_the_model():
    both = PoolRouter([pool("a", "model-a", ("tara", "leo")), pool("b", "model-b", ("tara",))],
                      default="b")
    err = refusal(both.route, None, "tara")
    assert err.code is p.ErrorCode.INVALID_REQUEST and err.param == "model"
    assert "model-a" in err.message and "model-b" in err.message
    assert both.route("model-a", "tara").name == "a"
    assert both.route(None, "leo").name == "a"


@pytest.mark.parametrize("pools, message", [
    ([{"name": "en", "model": "m", "workers": ["http://a"]},
      {"name": "en", "model": "n", "workers": ["http://b"]}], "unique"),
    ([{"name": "en", "workers": ["http://a"]},
      {"name": "ar", "model": "n", "workers": ["http://b"]}], "names its model"),
    ([{"name": "en", "model": "tts-1", "workers": ["http://a"]},
      {"name": "ar", "model": "n", "workers": ["http://b"]}], "no model in particular"),
    ([{"name": "Bad_Name", "model": "m", "workers": ["http://a"]}], "a-z"),
    ([{"name": "en", "model": "m"}], "exactly one of workers"),
    ([{"name": "en", "model": "m", "workers": ["http://a"], "colour": 1}], "unknown keys"),
])
def test_pools_file_refuses_bad_pools(tmp_path, pools, message):
    path = tmp_path / "pools.json"
    path.write_text(json.dumps({"pools": pools}))
    with pytest.raises(ConfigError, match=message):
        config_from_args(["--pools-file", str(path), "--no-auth"])


def test_pools_file_and_default_pool(tmp_path):
    path = tmp_path / "pools.json"
    path.write_text(json.dumps({"default_pool": "arabic", "pools": [
        {"name": "english", "model": ENGLISH, "discover": "ns/english-workers"},
        {"name": "arabic", "model": ARABIC, "workers": ["http://127.0.0.1:1/"],
         "voices": ["Noura"], "voice_aliases": {"Aisha": "lulwa"}}]}))
    cfg = config_from_args(["--pools-file", str(path), "--no-auth"])
    assert cfg.default_pool == "arabic"
    assert [(pc.name, pc.discover, pc.workers) for pc in cfg.pool_configs()] == [
        ("english", "ns/english-workers", []), ("arabic", None, ["http://127.0.0.1:1"])]
    assert cfg.pools[1].voices == ["noura"] and cfg.pools[1].voice_aliases == {"aisha": "lulwa"}
    with pytest.raises(ConfigError, match="not both"):
        GatewayConfig(workers=["http://a"], pools=cfg.pools, no_auth=True)
    with pytest.raises(ConfigError, match="default pool"):
        GatewayConfig(pools=cfg.pools, default_pool="french", no_auth=True)


# --- through a gateway ---------------------------------------------------------------------
@pytest.fixture
def two_pools(fake_server, gateway_server):
    en = fake_server(worker_id="w-en", voices=ENGLISH_VOICES, chunks=2)
    ar = fake_server(worker_id="w-ar", voices=ARABIC_VOICES, aliases={}, chunks=2, tone=500)
    gw = gateway_server([], pools=[
        PoolConfig(name="english", model=ENGLISH, workers=[en.url]),
        PoolConfig(name="arabic", model=ARABIC, workers=[ar.url],
                   voice_aliases=ARABIC_ALIASES)], default_pool="english")
    assert gw.wait_until(lambda: all(w.voices for _, w in gw.gateway.workers()))
    return gw, en, ar


def speech(client, gw, **body) -> httpx.Response:
    return client.post(gw.url + p.GROQ_SPEECH_PATH, headers=auth(),
                       json={"input": "مرحبا بكم في تطبيقنا", "response_format": "wav", **body})


def test_each_model_is_served_by_its_own_pool(two_pools, client):
    gw, en, ar = two_pools
    r = speech(client, gw, model=ARABIC, voice="noura")
    assert r.status_code == 200 and r.headers[p.HEADER_WORKER_ID] == "w-ar"
    assert ar.stream_requests[-1].body["voice"] == "noura"
    assert "model" not in ar.stream_requests[-1].body  # the pool was the model's choice
    r = speech(client, gw, model=ENGLISH, voice="tara", input="Hello.")
    assert r.status_code == 200 and r.headers[p.HEADER_WORKER_ID] == "w-en"
    r = speech(client, gw, model="tts-1", voice="aisha")  # Groq's Arabic name, an alias
    assert r.headers[p.HEADER_WORKER_ID] == "w-ar" and ar.stream_requests[-1].body["voice"] == "lulwa"
    r = speech(client, gw, model="tts-1", voice="alloy")  # in both: the default pool
    assert r.headers[p.HEADER_WORKER_ID] == "w-en" and en.stream_requests[-1].body["voice"] == "tara"

    r = speech(client, gw, model="canopylabs/orpheus-french", voice="tara")
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "model_not_found" and ENGLISH in err["message"] and ARABIC in err["message"]
    r = speech(client, gw, model=ARABIC, voice="tara")
    assert r.status_code == 400 and r.json()["error"]["code"] == "unknown_voice"
    assert "noura" in r.json()["error"]["message"]


def test_v1_and_websocket_take_model(two_pools, client):
    gw, en, ar = two_pools
    r = client.post(gw.url + p.STREAM_PATH, headers=auth(),
                    json={"text": "مرحبا", "model": ARABIC, "voice": "fahad"})
    assert r.status_code == 200 and r.headers[p.HEADER_WORKER_ID] == "w-ar"
    r = client.post(gw.url + p.STREAM_PATH, headers=auth(), json={"text": "مرحبا", "voice": "sultan"})
    assert r.headers[p.HEADER_WORKER_ID] == "w-ar"
    r = client.post(gw.url + p.STREAM_PATH, headers=auth(), json={"text": "Hi."})
    assert r.headers[p.HEADER_WORKER_ID] == "w-en"  # neither: the default pool
    with connect(gw.ws_url + p.WS_PATH, additional_headers=auth()) as ws:
        assert json.loads(ws.recv())["type"] == "ready"
        before = len(ar.stream_requests)
        ws.send(json.dumps({"type": "speak", "utterance_id": "u1", "text": "مرحبا",
                            "model": ARABIC, "voice": "lulwa"}))
        while True:
            msg = ws.recv()
            if isinstance(msg, str) and json.loads(msg)["type"] in p.WS_TERMINAL_TYPES:
                assert json.loads(msg)["type"] == "done"
                break
        assert len(ar.stream_requests) == before + 1
        ws.send(json.dumps({"type": "speak", "utterance_id": "u2", "text": "x",
                            "model": "nope"}))
        err = json.loads(ws.recv())
        assert err["type"] == "error" and err["code"] == "model_not_found"


def test_models_voices_system_and_metrics_per_pool(two_pools, client):
    gw, _en, _ar = two_pools
    ids = [m["id"] for m in client.get(gw.url + p.MODELS_PATH, headers=auth()).json()["data"]]
    assert ids[:2] == [ENGLISH, ARABIC] and "tts-1" in ids
    voices = client.get(gw.url + p.VOICES_PATH, headers=auth()).json()
    by_pool = {entry["name"]: entry for entry in voices["pools"]}
    assert by_pool["arabic"]["voices"] == sorted(ARABIC_VOICES)
    assert by_pool["arabic"]["models"] == [ARABIC] and by_pool["english"]["default"]
    assert {"id": "noura", "object": "voice", "model": ARABIC, "pool": "arabic"} in voices["data"]
    client.post(gw.url + p.STREAM_PATH, headers=auth(), json={"text": "x", "voice": "noura"})
    snap = p.SystemSnapshot.model_validate(client.get(gw.url + p.SYSTEM_PATH, headers=auth()).json())
    pools = {ps.name: ps for ps in snap.pools}
    assert set(pools) == {"english", "arabic"} and snap.ready
    assert pools["arabic"].ttfa_p50_ms is not None and pools["english"].ttfa_p50_ms is None
    assert pools["arabic"].workers_ready == pools["english"].workers_ready == 1
    assert {w.pool for w in snap.workers} == {"english", "arabic"}
    metrics = client.get(gw.url + "/metrics").text
    assert 'orpheus_gateway_requests_total{api="v1",pool="arabic"} 1.0' in metrics
    assert 'orpheus_gateway_workers_ready{pool="english"} 1.0' in metrics


def test_a_full_pool_does_not_hold_up_the_other(two_pools, client):
    """Every Arabic slot held by a stalled stream and the Arabic worker refusing more (429):
    Arabic requests are refused, English ones are served at once by the English worker."""
    gw, en, ar = two_pools
    ar.script(Behaviour.stall(after=1), Behaviour.stall(after=1))
    ends: list[str] = []

    def hold() -> None:
        r = httpx.post(gw.url + p.STREAM_PATH, headers=auth(), timeout=10,
                       json={"text": "مرحبا", "voice": "noura", "timeout_s": 3})
        ends.append(json.loads(r.text.splitlines()[-1])["code"])

    held = [threading.Thread(target=hold) for _ in range(2)]
    for t in held:
        t.start()
    assert ar.wait_until(lambda: ar.open_streams == 2)
    ar.queue_depth = 16
    ar.default = Behaviour.http_error(429, "overloaded", retry_after_s=1, queue_depth=16)
    arabic = gw.gateway.pools.by_name["arabic"]
    assert gw.wait_until(lambda: arabic.queue_depth() >= 16)
    # A further Arabic request is held by its pool (no Arabic worker takes it) until its
    # deadline; meanwhile an English one is served at once by the English worker.
    waiting: list[httpx.Response] = []
    extra = threading.Thread(target=lambda: waiting.append(httpx.post(
        gw.url + p.STREAM_PATH, headers=auth(), timeout=10,
        json={"text": "x", "voice": "noura", "timeout_s": 2})))
    extra.start()
    assert gw.wait_until(lambda: arabic.upstream.held == 1)
    r = client.post(gw.url + p.STREAM_PATH, headers=auth(), json={"text": "Hi.", "voice": "tara"})
    assert r.status_code == 200 and r.headers[p.HEADER_WORKER_ID] == "w-en"
    assert isinstance(p.decode_frame(r.text.splitlines()[-1]), p.EosFrame)
    assert arabic.upstream.held == 1
    extra.join(10)
    # v1 carries a gateway-side deadline in-band: one error frame, the stream's only frame.
    assert waiting[0].status_code == 200
    assert [json.loads(line)["code"] for line in waiting[0].text.splitlines()] == [
        "deadline_exceeded"]
    snap = client.get(gw.url + p.SYSTEM_PATH, headers=auth()).json()
    pools = {ps["name"]: ps for ps in snap["pools"]}
    assert pools["arabic"]["queue_depth"] >= 16 and pools["english"]["queue_depth"] == 0
    for t in held:
        t.join(10)
    assert ends == ["deadline_exceeded"] * 2


def test_one_pool_keeps_the_single_model_behaviour(fake_server, gateway_server, client):
    srv = fake_server(worker_id="w-1")
    gw = gateway_server([srv.url], model_name=ARABIC)
    gw.wait_polled()
    r = client.post(gw.url + p.STREAM_PATH, headers=auth(), json={"text": "x", "model": ENGLISH})
    assert r.status_code == 400 and r.json()["error"]["code"] == "model_not_found"
    r = client.post(gw.url + p.STREAM_PATH, headers=auth(), json={"text": "x", "model": ARABIC})
    assert r.status_code == 200 and API_KEY not in r.text
