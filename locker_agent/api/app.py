"""The app factory: one FastAPI app with the kiosk page, its API, maintenance, health, metrics."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from locker_agent import __version__
from locker_agent.api.context import ApiContext
from locker_agent.api.courier import courier_router
from locker_agent.api.errors import install_error_handlers, responses
from locker_agent.api.health import health
from locker_agent.api.kiosk import kiosk_router
from locker_agent.api.limits import BodySizeLimit
from locker_agent.api.live import LiveFeed
from locker_agent.api.maintenance import maintenance_router
from locker_agent.api.metrics import CONTENT_TYPE, LockerMetrics
from locker_agent.api.schemas import Health

KIOSK_DIR = Path(__file__).parent / "kiosk"
KIOSK_PATH = "/kiosk/"

SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
"""The page may load nothing from outside the locker (it may be offline, and must not leak)."""


class _SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
                if scope["path"].startswith("/api/"):
                    message["headers"].append((b"cache-control", b"no-store"))
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(context: ApiContext) -> FastAPI:
    app = FastAPI(
        title="locker-agent local API",
        version=__version__,
        description="The kiosk page's API, maintenance, health and metrics of one locker.",
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=context.max_body_bytes)
    app.add_middleware(_SecurityHeaders)
    feed = LiveFeed(context)
    metrics = LockerMetrics(context)
    app.state.context = context
    app.state.feed = feed
    app.state.metrics = metrics

    app.include_router(kiosk_router(context, feed))
    if context.courier_desk is not None:
        app.include_router(courier_router(context, context.courier_desk))
    app.include_router(maintenance_router(context))

    @app.get("/healthz", tags=["operations"], responses={503: {"model": Health}, 500: {}},
             summary="Can this locker serve a customer now? (MQTT reported, not fatal)")
    async def healthz() -> Response:
        result = await health(context)
        return Response(
            result.model_dump_json(), status_code=200 if result.ok else 503,
            media_type="application/json",
        )

    @app.get(
        "/metrics", tags=["operations"], response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
                   **responses(500)},
        summary="Prometheus metrics",
    )
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse(KIOSK_PATH)

    app.mount("/kiosk", StaticFiles(directory=KIOSK_DIR, html=True), name="kiosk")
    return app
