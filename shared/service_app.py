"""The frame every model service is built in: lifespan loading, health, readiness, metrics, auth, errors.

A service supplies its routers and a `ModelHolder`; this module supplies the rest, so the three services
behave the same at the edges (see README, "Every service").
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from shared.auth import bearer_guard
from shared.http_errors import install_error_handlers
from shared.metrics import ServiceMetrics
from shared.model_holder import ModelHolder
from shared.request_context import RequestContextMiddleware
from shared.settings import Settings


def create_service_app(
    *,
    name: str,
    title: str,
    description: str,
    settings: Settings,
    holder: ModelHolder[Any],
    metrics: ServiceMetrics,
    routers: list[APIRouter],
    on_startup: Callable[[FastAPI], Any] | None = None,
    on_shutdown: Callable[[FastAPI], Any] | None = None,
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        holder.start()
        if on_startup:
            await on_startup(app)
        try:
            yield
        finally:
            if on_shutdown:
                await on_shutdown(app)

    app = FastAPI(title=title, description=description, version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.holder = holder
    app.state.metrics = metrics
    app.state.service_name = name
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)

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
    for router in routers:
        app.include_router(router, dependencies=[guard])
    return app
