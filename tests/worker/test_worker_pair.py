"""The shared `worker_pair` fixture other suites build on: two independent, ready workers."""

import httpx
import pytest

from orpheus_tts import protocol as P

pytestmark = [pytest.mark.engine, pytest.mark.timeout(900)]


def test_worker_pair_serves_two_distinct_workers(worker_pair):
    ids = set()
    for w in worker_pair:
        snap = httpx.get(w.url + P.SYSTEM_PATH, timeout=10).json()
        assert snap["ready"] and snap["role"] == "worker"
        ids.add(snap["worker_id"])
        r = httpx.post(w.url + P.STREAM_PATH, json={"text": "Hi.", "max_tokens": 21},
                       timeout=120)
        frames = [f for f in map(P.decode_frame, r.content.splitlines()) if f is not None]
        assert frames[-1].type == "eos" and frames[-1].samples == 3 * 2048
        assert r.headers[P.HEADER_WORKER_ID] == snap["worker_id"]
    assert ids == {"w-a", "w-b"}
