"""Rotating the API keys needs no restart: the gateway notices the mounted file change (as a
Kubernetes Secret volume swaps it: a new directory behind a symlink) and swaps its keys at once;
a stream opened before the swap ends with `eos`."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from orpheus_gateway.config import KEY_RELOAD_BOUND_S

pytestmark = pytest.mark.timeout(120)


def _secret_volume(root, keys: list[str], generation: int) -> None:
    """What the kubelet does: write `..<gen>/api-keys`, then swap the `..data` symlink."""
    data = root / f"..{generation}"
    data.mkdir()
    (data / "api-keys").write_text("\n".join(keys) + "\n")
    tmp = root / "..data_tmp"
    tmp.symlink_to(data.name)
    os.replace(tmp, root / "..data")


def _status(url: str, key: str) -> int:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(url + "/v1/voices", headers=headers, trust_env=False, timeout=5).status_code


def _wait_status(url: str, key: str, want: int) -> float:
    started = time.monotonic()
    while _status(url, key) != want:
        if time.monotonic() - started > KEY_RELOAD_BOUND_S + 3:
            raise AssertionError(f"key not {want} after {KEY_RELOAD_BOUND_S + 3} s")
        time.sleep(0.05)
    return time.monotonic() - started


def test_rotating_the_key_file_swaps_keys_and_streams_keep_going(hostile_gateway, tmp_path):
    old, new = "sk-old-" + "a" * 20, "sk-new-" + "b" * 20
    volume = tmp_path / "secret"
    volume.mkdir()
    _secret_volume(volume, [old], 1)
    (volume / "api-keys").symlink_to("..data/api-keys")
    gw = hostile_gateway("--api-keys-file", str(volume / "api-keys"), keys=[old])
    with httpx.Client(trust_env=False, timeout=30) as client, ThreadPoolExecutor(1) as pool:
        def long_stream() -> list[dict]:
            with client.stream("POST", gw.url + "/v1/tts/stream", headers=gw.headers(old),
                               json={"text": "[[fake kind=normal chunks=60 chunk_delay_s=0.1]]"}
                               ) as r:
                assert r.status_code == 200
                return [json.loads(line) for line in r.iter_lines() if line]
        inflight = pool.submit(long_stream)
        assert gw.workers[0].wait_until(
            lambda: sum(f.open_streams for f in gw.workers) == 1, 5)
        _secret_volume(volume, [new], 2)
        took = _wait_status(gw.url, new, 200)
        assert took <= KEY_RELOAD_BOUND_S + 1
        assert _status(gw.url, old) == 401
        frames = inflight.result(30)
    assert frames[-1]["type"] == "eos" and sum(f["type"] == "chunk" for f in frames) == 60
    # A plain file rewritten in place counts too; an empty file keeps the keys (never auth off).
    gw2 = hostile_gateway(keys=[old])
    gw2.key_file.write_text("")
    time.sleep(KEY_RELOAD_BOUND_S + 0.5)
    assert _status(gw2.url, old) == 200 and _status(gw2.url, "") == 401
    gw2.key_file.write_text(f"# rotated\n{new}\n")
    _wait_status(gw2.url, new, 200)
    assert _status(gw2.url, old) == 401
    assert new not in gw2.log() and old not in gw2.log()
