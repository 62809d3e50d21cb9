"""The kubelet probes a worker without the internal token: every probe path the operator wires
into the worker pod passes the worker's token guard. On a real node the startup probe got 401
from /startupz (only /healthz and /readyz were open), so no worker ever started."""

from __future__ import annotations

import asyncio

import httpx

from orpheus_operator import crd, manifests
from orpheus_operator.cluster import Cluster
from orpheus_worker.guard import WorkerGuard
from starlette.types import Receive, Scope, Send


async def _ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def test_every_probe_of_the_worker_pod_passes_the_token_guard() -> None:
    body = {"apiVersion": crd.API_VERSION, "kind": crd.KIND,
            "metadata": {"name": "tts", "namespace": "voice", "uid": "uid-1", "generation": 1},
            "spec": {"model": {"standIn": True}, "gateway": {"auth": {"enabled": False}}}}
    pod = manifests.worker_deployment(Cluster.from_body(body))["spec"]["template"]["spec"]
    (worker,) = pod["containers"]
    paths = {worker[probe]["httpGet"]["path"] for probe in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert len(paths) == 3
    guard = WorkerGuard(_ok, token="t0ken-" + "x" * 32)

    async def statuses() -> dict[str, int]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=guard), base_url="http://worker") as client:
            found = {path: (await client.get(path)).status_code for path in sorted(paths)}
            found["/v1/system"] = (await client.get("/v1/system")).status_code  # the guard is on
            return found

    result = asyncio.run(statuses())
    assert result.pop("/v1/system") == 401
    assert result == dict.fromkeys(paths, 200)
