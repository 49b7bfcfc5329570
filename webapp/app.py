"""The web app: the REST API under /api/v1, book links under /books, and the storybook studio (Gradio) at /.

`create_web_app` declares everything; the lifespan starts the tiny services when asked, builds the Workshop in
the server's own event loop, and resumes books a previous run left unfinished. `server_options` is what uvicorn
must be given to serve it (which proxies to believe, how long a client may idle).
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared.bodies import BodyLimitMiddleware
from shared.http_errors import install_error_handlers
from shared.metrics import ServiceMetrics
from shared.request_context import RequestContextMiddleware
from shared.settings import Settings
from webapp.api import WebState, api_router, books_router
from webapp.api.books import reader_book
from webapp.health import dependency_health_async
from webapp.http_guards import (
    UPLOAD_PATHS, BookFilesGuard, EndsOnDisconnect, KnownRouteGuard, LoginThrottle, NotFoundShape, SameOriginGuard, GradioCopies,
    upload_limit,
)
from webapp.public_address import AllowedHostsGuard, host_rule, public_address
from webapp.jobs.safety_metrics import REGISTRY as SAFETY_REGISTRY
from webapp.reader.routes import reader_router
from webapp.launcher import InProcessServices
from webapp.workshop import build_workshop
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


# The one error shape, as /openapi.json documents it.
ERROR_SCHEMA = {
    "title": "Error",
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "message", "param"],
            "properties": {
                "type": {"type": "string", "examples": ["invalid_request_error"]},
                "message": {"type": "string", "description": "What was wrong, in plain words: the field and the rule."},
                "param": {"anyOf": [{"type": "string"}, {"type": "null"}], "description": "The field at fault, when one is."},
            },
        }
    },
}
_INVALID = {
    "description": "The request is invalid; the message names the field and the rule.",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def document_errors(app: FastAPI) -> None:
    """/openapi.json with the 400 the app sends for a request that fails validation, where FastAPI writes 422."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.get("responses", {})
                if responses.pop("422", None) is not None or "requestBody" in operation:
                    responses.setdefault("400", _INVALID)
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        schemas["Error"] = ERROR_SCHEMA
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


# How long an idle keep-alive connection is held open (uvicorn's default, said out loud), and the most one request's
# head may be before the server refuses it.
KEEP_ALIVE_S = 5
MAX_REQUEST_HEAD_BYTES = 16 * 1024


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options for the web app: believe `X-Forwarded-For` only from FABULA_FORWARDED_ALLOW_IPS (uvicorn
    itself trusts loopback unless told otherwise, so any local caller could pose as any address), and bound what
    an idle or slow client may hold."""
    trusted = settings.forwarded_allow_ips.strip()
    return {
        "proxy_headers": bool(trusted), "forwarded_allow_ips": trusted,
        "timeout_keep_alive": KEEP_ALIVE_S, "h11_max_incomplete_event_size": MAX_REQUEST_HEAD_BYTES,
    }


def create_web_app(settings: Settings, *, host: str = "127.0.0.1", port: int = 7860, start_services: bool = True) -> FastAPI:
    """The whole web app. With `start_services` on the tiny profile, the three services run in this process."""
    address = public_address(settings.public_url, host, port)
    state = WebState.create(settings, address.url, address_warning=address.warning)
    metrics = ServiceMetrics("web")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        services: list[InProcessServices] = []
        effective = settings
        if start_services and settings.profile.self_contained and not settings.broker_url:  # replicas use shared services
            effective = await asyncio.to_thread(start_tiny_services, settings, services)
        workshop = build_workshop(effective, public_url=state.public_url)
        state.workshop = workshop
        resumed = workshop.stories.resume_unfinished()
        if resumed:
            logger.info("resumed unfinished books", extra={"fields": {"count": len(resumed)}})
        try:
            yield
        finally:
            state.workshop = None
            await workshop.aclose()
            await asyncio.to_thread(stop_services, services)

    app = FastAPI(title="Fabula", description=DESCRIPTION, version="0.1.0", lifespan=lifespan)
    app.state.web = state
    app.state.settings = settings
    install_error_handlers(app)
    document_errors(app)
    copies = GradioCopies(settings.data_dir / "studio-copies", settings.data_dir / "artifacts")
    api_key = settings.api_key.get_secret_value() if settings.api_key else None
    # Each `add_middleware` wraps the ones before it: the request id is outermost, so every refusal carries one.
    app.add_middleware(BookFilesGuard, state=state, copies=copies)
    app.add_middleware(EndsOnDisconnect, paths=UPLOAD_PATHS)
    app.add_middleware(BodyLimitMiddleware, limit=upload_limit(settings), paths=UPLOAD_PATHS)
    app.add_middleware(KnownRouteGuard, routes=app.router.routes)
    app.add_middleware(NotFoundShape)
    app.add_middleware(LoginThrottle, api_key=api_key, failures=state.key_failures)
    app.add_middleware(SameOriginGuard, settings=settings)
    app.add_middleware(AllowedHostsGuard, rule=host_rule(settings))
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    app.include_router(api_router(settings, key_failures=state.key_failures))
    app.include_router(books_router)
    app.include_router(reader_router(lambda token: reader_book(state, token)))

    @app.get("/healthz", tags=["health"], summary="The process is alive.")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": "web"}

    @app.get("/readyz", tags=["health"], summary="The studio is built and its job database and broker answer.")
    async def readyz() -> JSONResponse:
        workshop = state.workshop
        body: dict[str, Any] = {"status": "starting", "service": "web", "profile": settings.profile.value}
        if workshop is None:
            return JSONResponse(body, status_code=503)
        engine = getattr(workshop.store, "engine", None)
        down = await dependency_health_async(settings, engine=engine)
        if down:
            return JSONResponse({**body, "status": "not_ready", "down": down}, status_code=503, headers={"Retry-After": "5"})
        return JSONResponse({**body, "status": "ready", "down": []})

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics.")
    async def metrics_endpoint() -> Response:
        return Response(metrics.render() + generate_latest(SAFETY_REGISTRY), media_type=CONTENT_TYPE_LATEST)

    mount_ui(app, state, copies=copies)
    return app
