"""`orpheus-tts up --pools english,arabic`: one gateway over an English and an Arabic-Saudi
stand-in pool, real processes. Groq's post-mortem snippet (model `canopylabs/orpheus-arabic-
saudi`, voice `noura`, Arabic text) is served by the Arabic pool's worker; the English model
and `tara` by the English one; an unknown model is a 400 that lists both."""

from __future__ import annotations

import json
import re
import wave
from pathlib import Path

import httpx
import openai
import pytest

from orpheus_tts import protocol as p
from orpheus_tts.up import STAND_IN_POOLS
from tests.battery.test_up import running_up
from tests.clients.test_groq_client import POST_MORTEM
from tests.clients.venvs import run_driver
from tests.support.worker_proc import ensure_tiny_model

pytestmark = [pytest.mark.engine, pytest.mark.timeout(900)]  # incl. starting the engines

ENGLISH, ARABIC = STAND_IN_POOLS["english"][0], STAND_IN_POOLS["arabic"][0]


@pytest.fixture(scope="module")
def pools_up(tiny_model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("up-pools")
    (tmp / "cache").mkdir()
    (tmp / "cache" / "tiny-model").symlink_to(Path(tiny_model))
    (tmp / "cache" / "tiny-model-arabic").symlink_to(ensure_tiny_model(voices="arabic"))
    with running_up(tmp, ["--pools", "english,arabic"], timeout_s=600) as stack:
        banner = stack["banner"]
        key = re.search(r"API key\s+(\S+)", banner).group(1)  # type: ignore[union-attr]
        workers = re.search(r"workers\s+(.+)", banner).group(1)  # type: ignore[union-attr]
        yield {"url": f"http://127.0.0.1:{stack['port']}", "key": key, "banner": banner,
               "workers": [w.strip() for w in workers.split(", ")]}


def worker_of(stack: dict, worker_id: str) -> str:
    for url in stack["workers"]:
        if httpx.get(url + p.SYSTEM_PATH, timeout=10).json()["worker_id"] == worker_id:
            return url
    raise AssertionError(f"no worker {worker_id} in {stack['workers']}")


def streams_done(worker_url: str) -> float:
    text = httpx.get(worker_url + "/metrics", timeout=10).text
    match = re.search(r'^orpheus_worker_streams_total\{outcome="eos"\} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def test_the_post_mortem_snippet_is_served_by_the_arabic_pool(pools_up, tmp_path):
    assert f"english: model={ENGLISH}" in pools_up["banner"]
    arabic, english = worker_of(pools_up, "arabic-1"), worker_of(pools_up, "english-1")
    before = streams_done(arabic), streams_done(english)
    script = tmp_path / "snippet.py"
    # groq's `BinaryAPIResponse` has no `.content` (tests/clients/test_groq_client.py): the
    # snippet with the client's own accessor.
    script.write_text(POST_MORTEM.replace("response.content", "response.read()"),
                      encoding="utf-8")
    done = run_driver("frameworks", "run_script.py", str(script), str(tmp_path), timeout=300,
                      env={"GROQ_API_KEY": pools_up["key"], "GROQ_BASE_URL": pools_up["url"]})
    assert done.returncode == 0, done.stderr
    with wave.open(str(tmp_path / "output.wav")) as w:
        assert w.getframerate() == 24_000 and w.getnframes() > 0
    assert (streams_done(arabic), streams_done(english)) == (before[0] + 1, before[1])


def test_each_model_goes_to_its_pool_and_an_unknown_one_lists_both(pools_up):
    client = openai.OpenAI(base_url=pools_up["url"] + "/openai/v1", api_key=pools_up["key"],
                           max_retries=0, timeout=300)
    for model, voice, text, worker in [(ARABIC, "noura", "مرحبا بكم في تطبيقنا", "arabic-1"),
                                       (ENGLISH, "tara", "Hello there.", "english-1")]:
        raw = client.audio.speech.with_raw_response.create(
            model=model, voice=voice, input=text, response_format="wav")
        assert raw.headers[p.HEADER_WORKER_ID] == worker
        assert len(raw.content) > 44
    with pytest.raises(openai.BadRequestError) as info:
        client.audio.speech.create(model="canopylabs/orpheus-french", voice="tara", input="x")
    error = info.value.body
    assert error["code"] == "model_not_found" and ENGLISH in error["message"] \
        and ARABIC in error["message"]
    # The v1 stream: the worker's metrics frame names the Arabic pool's worker.
    r = httpx.post(pools_up["url"] + p.STREAM_PATH, timeout=300,
                   headers={"Authorization": f"Bearer {pools_up['key']}"},
                   json={"text": "مرحبا", "model": ARABIC, "voice": "fahad", "max_tokens": 42})
    frames = [p.decode_frame(line) for line in r.text.splitlines()]
    assert isinstance(frames[-1], p.EosFrame)
    assert {f.worker_id for f in frames if isinstance(f, p.MetricsFrame)} == {"arabic-1"}
    listing = httpx.get(pools_up["url"] + p.MODELS_PATH,
                        headers={"Authorization": f"Bearer {pools_up['key']}"}).json()
    assert [m["id"] for m in listing["data"]][:2] == [ENGLISH, ARABIC]
    assert json.dumps(listing).count("orpheus-tts") >= 2
