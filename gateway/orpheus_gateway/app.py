"""`create_app`: the gateway's routers, middleware, error handlers and lifespan, assembled.

Each API surface is a router in `routes/`; the state they share is `core.Gateway`.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from orpheus_tts import tracing

from .config import GatewayConfig
from .core import Gateway
from .error_shapes import install_error_handlers
from .middleware import AuthMiddleware
from .routes import canopy, groq, models, omni, pages, speech, v1, websocket
from .routes.common import SERVER_SEND_SCOPE


class GatewayApp(FastAPI):
    """FastAPI that also leaves the server's own `send` in the scope, so a relay can send its
    body chunks without the middleware wrappers (which only look at the response start)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[SERVER_SEND_SCOPE] = send
        try:
            await super().__call__(scope, receive, send)
        finally:
            # `send` belongs to the server's request cycle, which holds the scope: dropping it
            # here lets reference counting free the request instead of the cycle collector.
            del scope[SERVER_SEND_SCOPE]


def create_app(config: GatewayConfig, gateway: Gateway | None = None) -> FastAPI:
    gw = gateway or Gateway(config)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        await gw.start()
        try:
            yield
        finally:
            await gw.stop()

    app = GatewayApp(title="Orpheus TTS gateway", version="1", lifespan=lifespan)
    app.state.gateway = gw
    app.add_middleware(AuthMiddleware, gateway=gw)
    app.add_middleware(tracing.TraceContextMiddleware)  # outermost: joins the caller's trace
    install_error_handlers(app, gw.count_error)
    for router in (v1.router, speech.router, websocket.router, omni.router, pages.router,
                   groq.router, models.router, canopy.router):
        app.include_router(router)
    return app
