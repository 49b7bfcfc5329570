"""The web app: the REST API under /api/v1, book links under /books, and the storybook studio (Gradio) at /.

`create_web_app` declares everything; the lifespan starts the tiny services when asked, builds the Studio in
the server's own event loop, and resumes books a previous run left unfinished.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared.http_errors import install_error_handlers
from shared.metrics import ServiceMetrics
from shared.request_context import RequestContextMiddleware
from shared.settings import Profile, Settings
from webapp.api import WebState, api_router, books_router
from webapp.api.books import reader_book
from webapp.public_address import public_address
from webapp.jobs.safety_metrics import REGISTRY as SAFETY_REGISTRY
from webapp.reader.routes import reader_router
from webapp.launcher import InProcessServices
from webapp.studio import build_studio
from webapp.ui import mount_ui

logger = logging.getLogger(__name__)

DESCRIPTION = (
    "One photo in; an illustrated, translated storybook out. Create a story with `POST /api/v1/stories`, follow "
    "`/events`, then download the PDF from `book_url`. When `FABULA_API_KEY` is set, /api/v1 needs "
    "`Authorization: Bearer <key>`; book links stay open (their tokens are unguessable)."
)


def start_tiny_services(settings: Settings, started: list[InProcessServices]) -> Settings:
    """The three tiny services on loopback threads; `started` collects them so shutdown (or a failure) stops them."""
    group = InProcessServices(settings)
    started.append(group)
    try:
        return group.start()
    except BaseException:
        stop_services(started)
        raise


def stop_services(started: list[InProcessServices]) -> None:
    for group in reversed(started):
        group.stop()
    started.clear()


def create_web_app(settings: Settings, *, host: str = "127.0.0.1", port: int = 7860, start_services: bool = True) -> FastAPI:
    """The whole web app. With `start_services` on the tiny profile, the three services run in this process."""
    address = public_address(settings.public_url, host, port)
    state = WebState.create(settings, address.url, address_warning=address.warning)
    metrics = ServiceMetrics("web")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        services: list[InProcessServices] = []
        effective = settings
        if start_services and settings.profile.self_contained:
            effective = await asyncio.to_thread(start_tiny_services, settings, services)
        studio = build_studio(effective, public_url=state.public_url)
        state.studio = studio
        resumed = studio.runner.resume_unfinished()
        if resumed:
            logger.info("resumed unfinished books", extra={"fields": {"count": len(resumed)}})
        try:
            yield
        finally:
            state.studio = None
            await studio.aclose()
            await asyncio.to_thread(stop_services, services)

    app = FastAPI(title="Fabula", description=DESCRIPTION, version="0.1.0", lifespan=lifespan)
    app.state.web = state
    app.state.settings = settings
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    app.include_router(api_router(settings))
    app.include_router(books_router)
    app.include_router(reader_router(lambda token: reader_book(state, token)))

    @app.get("/healthz", tags=["health"], summary="The process is alive.")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": "web"}

    @app.get("/readyz", tags=["health"], summary="The studio is built and taking books.")
    async def readyz() -> JSONResponse:
        ready = state.studio is not None
        return JSONResponse({"status": "ready" if ready else "starting", "service": "web", "profile": settings.profile.value}, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics.")
    async def metrics_endpoint() -> Response:
        return Response(metrics.render() + generate_latest(SAFETY_REGISTRY), media_type=CONTENT_TYPE_LATEST)

    mount_ui(app, state)
    return app
