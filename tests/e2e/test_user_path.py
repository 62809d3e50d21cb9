"""The user's path on a real node: `helm install` the chart, `kubectl apply` the kind example,
wait for `kubectl get otts` to say Ready, then talk to the gateway Service from the host with the
SDK, the `openai` client and the WebSocket API; scale; lose a worker pod mid-stream; delete the
cluster and see every child go. The namespace enforces the restricted Pod Security Standard.

The tests run in file order on one installation (module fixture `demo`): each step is what a
user does next. Every generated second costs several CPU seconds on this machine, so requests
are short (`max_tokens`)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from websockets.asyncio.client import connect

from orpheus_tts import protocol as p
from orpheus_tts.sdk import OrpheusTTS
from tests.k8s.realnode import NodeCluster

pytestmark = pytest.mark.timeout(1800)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "orpheus-cluster.yaml"
CHART = ROOT / "charts" / "orpheus-operator"
NAMESPACE = "orpheus-e2e"
SHORT = {"max_tokens": 42}  # a fraction of a second of audio
WORKER_PORT_SUFFIX = "-8100"  # workers name themselves HOSTNAME-PORT; HOSTNAME is the pod name


def _example() -> tuple[str, dict[str, Any], str]:
    docs = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]
    cluster = next(d for d in docs if d["kind"] == "OrpheusCluster")
    secret = next(d for d in docs if d["kind"] == "Secret")
    key = secret["stringData"]["keys"].split()[0]
    return cluster["metadata"]["name"], cluster, key


def wait_for(what: str, check: Callable[[], Any], timeout: float, interval: float = 2.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@dataclass
class Demo:
    node: NodeCluster
    name: str
    api_key: str

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.node.kubectl(*args, "-n", NAMESPACE, "-o", "json").stdout)

    def otts(self) -> dict[str, Any]:
        return self.kubectl_json("get", "otts", self.name)

    def ready(self) -> bool:
        conditions = self.otts().get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def gateway_url(self) -> str:
        services = self.kubectl_json("get", "services", "-l",
                                     f"app.kubernetes.io/instance={self.name},app.kubernetes.io/component=gateway")
        (service,) = services["items"]
        port = service["spec"]["ports"][0]["port"]
        return f"http://{service['spec']['clusterIP']}:{port}"

    def worker_pods(self) -> list[dict[str, Any]]:
        pods = self.kubectl_json("get", "pods", "-l",
                                 f"app.kubernetes.io/instance={self.name},app.kubernetes.io/component=worker")
        return [pod for pod in pods["items"] if not pod["metadata"].get("deletionTimestamp")]

    def routed_worker_urls(self) -> list[str]:
        """URLs of the workers the gateway would route to now, from its /v1/system snapshot."""
        response = httpx.get(self.gateway_url() + p.SYSTEM_PATH, timeout=10,
                             headers={"Authorization": f"Bearer {self.api_key}"})
        snapshot = p.SystemSnapshot.model_validate(response.json())
        return [w.url for w in snapshot.workers or [] if w.ready]

    def diagnostics(self) -> str:
        out = self.node.kubectl("get", "otts", "-n", NAMESPACE, "-o", "wide", check=False)
        return out.stdout + out.stderr + self.node.diagnostics(NAMESPACE)


@pytest.fixture(scope="module")
def demo(node_cluster: NodeCluster) -> Iterator[Demo]:
    node = node_cluster
    # The namespace a cautious user makes: the restricted Pod Security Standard, enforced.
    node.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/warn": "restricted"}}})
    try:
        node.helm("install", "orpheus", str(CHART), "-n", NAMESPACE, "--wait", "--timeout", "5m", timeout=400)
    except subprocess.CalledProcessError as exc:
        exc.add_note(node.diagnostics(NAMESPACE))
        raise
    node.kubectl("apply", "-n", NAMESPACE, "-f", str(EXAMPLE))
    name, _, key = _example()
    d = Demo(node, name, key)
    try:
        wait_for("`kubectl get otts` to report Ready", d.ready, timeout=900, interval=5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{d.diagnostics()}") from None
    yield d


def test_operator_runs_in_cluster_under_its_service_account(demo: Demo) -> None:
    pods = demo.kubectl_json("get", "pods", "-l", "app.kubernetes.io/name=orpheus-operator")["items"]
    assert pods, demo.diagnostics()
    spec = pods[0]["spec"]
    assert spec["serviceAccountName"] != "default"
    status = pods[0]["status"]
    assert all(c["ready"] for c in status["containerStatuses"])
    # Every pod of ours runs as non-root (the namespace's restricted standard admitted them all).
    for pod in demo.kubectl_json("get", "pods")["items"]:
        for container in pod["spec"]["containers"]:
            context = {**pod["spec"].get("securityContext", {}), **container.get("securityContext", {})}
            assert context.get("runAsNonRoot") is True, (pod["metadata"]["name"], context)


def test_sdk_streams_through_the_gateway_service(demo: Demo) -> None:
    async def run() -> tuple[bytes, p.EosFrame | None]:
        async with OrpheusTTS(demo.gateway_url(), api_key=demo.api_key, hedge_ttfb_ms=None) as tts:
            stream = tts.stream("Hello from a real node.", voice="tara", **SHORT)
            chunks = [chunk async for chunk in stream]
            return b"".join(chunks), stream.info.eos

    pcm, eos = asyncio.run(run())
    assert eos is not None and pcm and len(pcm) == eos.samples * 2


def test_openai_client_streams_through_the_gateway_service(demo: Demo) -> None:
    client = openai.OpenAI(base_url=demo.gateway_url() + "/v1", api_key=demo.api_key, max_retries=0, timeout=180)
    with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input="Hi.", response_format="wav") as response:
        data = b"".join(response.iter_bytes())
    assert data[:4] == b"RIFF" and len(data) > 44


def test_websocket_speaks_and_ends_with_done(demo: Demo) -> None:
    async def run() -> list[dict[str, Any]]:
        url = demo.gateway_url().replace("http://", "ws://") + p.WS_PATH
        async with connect(url, additional_headers={"Authorization": f"Bearer {demo.api_key}"},
                           open_timeout=20) as ws:
            assert json.loads(await ws.recv())["type"] == "ready"
            await ws.send(json.dumps({"type": "speak", "utterance_id": "u1", "text": "Hi.", "params": SHORT}))
            events: list[dict[str, Any]] = []
            audio = 0
            async with asyncio.timeout(180):
                while True:
                    message = await ws.recv()
                    if isinstance(message, bytes):
                        audio += len(message)
                        continue
                    events.append(json.loads(message))
                    if events[-1]["type"] in p.WS_TERMINAL_TYPES:
                        break
            assert audio > 0, events
            return events

    events = asyncio.run(run())
    assert events[-1]["type"] == "done", events


def test_scaled_up_worker_joins_routing(demo: Demo) -> None:
    before = {pod["metadata"]["name"] for pod in demo.worker_pods()}
    spec = demo.otts()["spec"]["workers"]
    target = len(before) + 1
    assert target <= spec["maxReplicas"]
    # Scaling as a user does it with autoscaling on: raise the floor, and the count with it (the
    # CRD refuses a floor above the current count: replicas must lie within [min, max]).
    demo.node.kubectl("patch", "otts", demo.name, "-n", NAMESPACE, "--type=merge", "-p",
                      json.dumps({"spec": {"workers": {"minReplicas": target, "replicas": target}}}))

    def new_ready_pod_ip() -> str | None:
        for pod in demo.worker_pods():
            statuses = pod.get("status", {}).get("containerStatuses", [])
            if pod["metadata"]["name"] not in before and statuses and all(s["ready"] for s in statuses):
                return pod["status"]["podIP"]
        return None

    ip = wait_for("a new worker pod to become Ready", new_ready_pod_ip, timeout=900, interval=5)
    wait_for(f"the gateway to route to the new worker at {ip}",
             lambda: any(f"//{ip}:" in url for url in demo.routed_worker_urls()), timeout=120)


def test_worker_pod_deleted_mid_stream_ends_with_one_terminal_frame_then_next_is_served(demo: Demo) -> None:
    url = demo.gateway_url() + p.STREAM_PATH
    headers = {"Authorization": f"Bearer {demo.api_key}"}
    frames: list[dict[str, Any]] = []
    victim = None
    with httpx.Client(timeout=180) as client:
        with client.stream("POST", url, headers=headers,
                           json={"text": "A long sentence that takes a while to say. " * 3, "max_tokens": 600}) as r:
            assert r.status_code == 200
            victim = r.headers[p.HEADER_WORKER_ID].removesuffix(WORKER_PORT_SUFFIX)
            for line in r.iter_lines():
                frames.append(json.loads(line))
                if frames[-1]["type"] == "chunk" and len(frames) == 1:
                    demo.node.kubectl("delete", "pod", victim, "-n", NAMESPACE, "--wait=false")
        kinds = [f["type"] for f in frames]
        assert sum(k in p.TERMINAL_TYPES for k in kinds) == 1 and kinds[-1] in p.TERMINAL_TYPES, kinds
        response = client.post(url, headers=headers, json={"text": "And now?", **SHORT})
        assert response.status_code == 200, response.text
        assert response.headers[p.HEADER_WORKER_ID].removesuffix(WORKER_PORT_SUFFIX) != victim
        assert json.loads(response.text.splitlines()[-1])["type"] == "eos"


def test_deleting_the_cluster_removes_every_child(demo: Demo) -> None:
    selector = f"app.kubernetes.io/instance={demo.name}"
    kinds = "deployments,replicasets,pods,services,configmaps,poddisruptionbudgets,serviceaccounts"
    assert demo.kubectl_json("get", kinds, "-l", selector)["items"]
    demo.node.kubectl("delete", "otts", demo.name, "-n", NAMESPACE, "--wait=true", timeout=300)
    wait_for("every child of the OrpheusCluster to be gone",
             lambda: not demo.kubectl_json("get", kinds, "-l", selector)["items"], timeout=300)
