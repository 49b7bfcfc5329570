"""The frame every model service is built in: lifespan loading, health, readiness, metrics, auth, errors, body limit.

A service describes itself in a `ServiceSpec` (its routers, its `ModelHolder`, its hooks) and this module supplies
the rest, so every service behaves the same at the edges (see README, "Every service"). The lifecycle follows
the model-server habit: set up once (the holder loads the model in the lifespan), then per request decode (the
shared body reader), predict (the shared micro-batcher), encode (the route's response model).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.middleware import Middleware

from shared.auth import bearer_guard
from shared.bodies import BodyLimit, BodyLimitMiddleware
from shared.http_errors import install_error_handlers
from shared.metrics import ServiceMetrics
from shared.model_holder import ModelHolder
from shared.request_context import RequestContextMiddleware
from shared.settings import Settings

AppHook = Callable[[FastAPI], Awaitable[Any]]

# The most any model route's body may be when a service names no limit of its own.
DEFAULT_BODY_LIMIT = BodyLimit(max_bytes=1024 * 1024, rule="a request to this service may be at most 1,048,576 bytes")


@dataclass(frozen=True)
class ServiceSpec:
    """What makes one model service itself; `create_service_app` supplies health, metrics, auth and errors."""

    name: str
    title: str
    description: str
    routers: list[APIRouter]
    holder: ModelHolder[Any]
    metrics: ServiceMetrics
    default_port: int | None = None
    resolver: Callable[[Settings], object] | None = None
    body_limit: BodyLimit = DEFAULT_BODY_LIMIT
    on_startup: AppHook | None = None
    on_shutdown: AppHook | None = None
    state: dict[str, Any] = field(default_factory=dict)


def create_service_app(
    spec: ServiceSpec | None = None,
    *,
    settings: Settings,
    name: str | None = None,
    title: str | None = None,
    description: str = "",
    holder: ModelHolder[Any] | None = None,
    metrics: ServiceMetrics | None = None,
    routers: list[APIRouter] | None = None,
    on_startup: AppHook | None = None,
    on_shutdown: AppHook | None = None,
) -> FastAPI:
    """The service app for `spec`; the keyword form (name, title, holder, metrics, routers, hooks) builds one."""
    if spec is None:
        if name is None or holder is None or metrics is None:
            raise TypeError("create_service_app needs a ServiceSpec, or name, holder and metrics")
        spec = ServiceSpec(
            name=name, title=title or name, description=description, routers=list(routers or []), holder=holder,
            metrics=metrics, on_startup=on_startup, on_shutdown=on_shutdown,
        )
    return _build(spec, settings)


def _build(spec: ServiceSpec, settings: Settings) -> FastAPI:
    holder, metrics, name = spec.holder, spec.metrics, spec.name

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        holder.start()
        if spec.on_startup:
            await spec.on_startup(app)
        try:
            yield
        finally:
            if spec.on_shutdown:
                await spec.on_shutdown(app)

    # Outermost first: the request id wraps the body limit, so a 413 carries an id and is counted.
    middleware = [
        Middleware(RequestContextMiddleware, metrics=metrics),
        Middleware(BodyLimitMiddleware, limit=spec.body_limit),
    ]
    app = FastAPI(title=spec.title, description=spec.description, version="0.1.0", lifespan=lifespan, middleware=middleware)
    app.state.settings = settings
    app.state.holder = holder
    app.state.metrics = metrics
    app.state.service_name = name
    app.state.spec = spec
    for key, value in spec.state.items():
        setattr(app.state, key, value)
    install_error_handlers(app)

    @app.get("/healthz", tags=["health"], summary="The process is alive.")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": name}

    @app.get("/readyz", tags=["health"], summary="The model is loaded: model id, device and dtype.")
    async def readyz() -> JSONResponse:
        if holder.engine is None:
            body = {"status": "failed" if holder.error else "loading", "service": name, "error": holder.error}
            return JSONResponse(body, status_code=503)
        info = holder.engine.info()
        return JSONResponse({"status": "ready", "service": name, "load_seconds": holder.load_seconds, **info.model_dump()})

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics.")
    async def metrics_endpoint() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    guard = Depends(bearer_guard(settings.api_key.get_secret_value() if settings.api_key else None))
    for router in spec.routers:
        app.include_router(router, dependencies=[guard])
    return app
