"""The Python floor for `bench_gateway`: a relay on the gateway's own server and client
libraries (uvicorn with httptools and uvloop, aiohttp with a pooled connector) that does
nothing else. No keys, no validation, no failover, no metrics, no log lines, no deadline: what
any gateway built on this stack costs at least, so the bench can tell the stack's share of the
gateway's overhead from the share of what the gateway does.

Run: `python benchmarks/floor_proxy.py PORT WORKER_URL[,WORKER_URL...]` (round robin).
"""

from __future__ import annotations

import itertools
import sys

import aiohttp
import uvicorn


def make_app(worker_urls: list[str]):
    workers = itertools.cycle(worker_urls)
    session: aiohttp.ClientSession | None = None

    async def lifespan(receive, send) -> None:
        nonlocal session
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def app(scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        url = next(workers) + scope["path"]
        headers = {"content-type": "application/json"}
        async with session.request(scope["method"], url, data=bytes(body),
                                   headers=headers) as upstream:
            await send({"type": "http.response.start", "status": upstream.status,
                        "headers": [(b"content-type",
                                     upstream.headers.get("content-type", "").encode())]})
            async for line in upstream.content:
                await send({"type": "http.response.body", "body": line, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return app


def main(argv: list[str]) -> int:
    port, urls = int(argv[0]), argv[1].split(",")
    uvicorn.run(make_app(urls), host="127.0.0.1", port=port, loop="uvloop", http="httptools",
                access_log=False, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
