"""The frame every model service is built in: lifespan loading, batching, health, readiness, metrics, auth, errors,
body limit.

A service describes itself once, in a `ServiceSpec`: its name (and so its port and URL setting), how to check
that its models are on this machine, how to load its engine, its routes, and how its requests are batched. The
launcher and `fabula serve` read the specs from one registry (`services.registry`); `create_service_app` supplies
the rest, so every service behaves the same at the edges (see README, "Every service"). The lifecycle follows the
model-server habit (LitServe's `LitAPI`): set up once (the holder loads the model in the lifespan), then per
request decode (the shared body reader), predict (the batcher this frame owns), encode (the route's response
model).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.middleware import Middleware

from shared.auth import bearer_guard
from shared.batching import Batcher, BatchSpec, MicroBatcher
from shared.bodies import BodyLimit, BodyLimitMiddleware
from shared.http_errors import install_error_handlers
from shared.metrics import ServiceMetrics
from shared.model_holder import ModelHolder
from shared.request_context import RequestContextMiddleware
from shared.settings import SERVICE_PORTS, Settings

# Loads a service's engine (on the holder's thread): the settings, the device ("cpu", "cuda:1") and the app's
# metrics (for an engine that records its own batches).
EngineLoader = Callable[[Settings, str, ServiceMetrics], Any]

# The most any model route's body may be when a service names no limit of its own.
DEFAULT_BODY_LIMIT = BodyLimit(max_bytes=1024 * 1024, rule="a request to this service may be at most 1,048,576 bytes")


def _default_body_limit(_: Settings) -> BodyLimit:
    return DEFAULT_BODY_LIMIT


@dataclass(frozen=True)
class ServiceSpec:
    """One model service, as the launcher knows it (name, port, URL setting, model check) and as the frame builds it.

    `batch` declares the micro-batcher the frame builds, starts and stops (routes reach it as
    `app.state.batcher`); `engine_batches` says the loaded engine batches continuously inside itself (it is a
    `shared.batching.Batcher`), so the frame starts it once it is loaded and stops it at shutdown instead.
    """

    name: str
    title: str
    description: str
    resolver: Callable[[Settings], object]
    load: EngineLoader
    routers: Callable[[Settings], list[APIRouter]]
    body_limit: Callable[[Settings], BodyLimit] = _default_body_limit
    batch: BatchSpec[Any, Any, Any] | None = None
    engine_batches: bool = False
    state: Callable[[Settings, ServiceMetrics], dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        if self.batch is not None and self.engine_batches:
            raise ValueError(f"The service {self.name!r} declares both a `batch` and `engine_batches`; one batcher only.")

    @property
    def port(self) -> int:
        """The port it listens on unless its URL setting says otherwise (shared.settings.SERVICE_PORTS)."""
        if self.name not in SERVICE_PORTS:
            raise KeyError(f"The service {self.name!r} has no port in shared.settings.SERVICE_PORTS; add it there.")
        return SERVICE_PORTS[self.name]

    @property
    def url_setting(self) -> str:
        """The `Settings` field that holds where the web app finds it (FABULA_<NAME>_URL)."""
        return f"{self.name}_url"

    def create_app(self, settings: Settings, *, device: str = "cpu") -> FastAPI:
        return create_service_app(self, settings=settings, device=device)


@dataclass(frozen=True)
class _Parts:
    """What one app is built from: the spec's parts, made for one settings and device."""

    name: str
    title: str
    description: str
    routers: list[APIRouter]
    holder: ModelHolder[Any]
    metrics: ServiceMetrics
    body_limit: BodyLimit = DEFAULT_BODY_LIMIT
    batcher: MicroBatcher[Any, Any] | None = None
    engine_batches: bool = False
    state: dict[str, Any] = field(default_factory=dict)


def create_service_app(spec: ServiceSpec, *, settings: Settings, device: str = "cpu") -> FastAPI:
    """The app of `spec` on `device`."""
    return _build(_parts_of(spec, settings, device), settings, spec)


def _parts_of(spec: ServiceSpec, settings: Settings, device: str) -> _Parts:
    metrics = ServiceMetrics(spec.name)
    holder: ModelHolder[Any] = ModelHolder(lambda: spec.load(settings, device, metrics), name=spec.name)
    batcher = spec.batch.build(holder.require, name=spec.name, metrics=metrics, settings=settings) if spec.batch else None
    return _Parts(
        name=spec.name, title=spec.title, description=spec.description, routers=spec.routers(settings), holder=holder,
        metrics=metrics, body_limit=spec.body_limit(settings), batcher=batcher, engine_batches=spec.engine_batches,
        state=spec.state(settings, metrics) if spec.state else {},
    )


class _EngineBatcher:
    """Starts an engine that batches inside itself as soon as it is loaded, and stops it at shutdown.

    An engine that finishes loading after shutdown is never started, so nothing is left running.
    """

    def __init__(self, service: str) -> None:
        self._service = service
        self._lock = threading.Lock()
        self._stopped = False
        self._started: Batcher | None = None

    def on_loaded(self, engine: object) -> None:
        """On the holder's load thread, before any request can see the engine."""
        if not isinstance(engine, Batcher):
            raise TypeError(f"The {self._service} spec says its engine batches, but {type(engine).__name__} has no start() and stop().")
        with self._lock:
            if not self._stopped:
                engine.start()
                self._started = engine

    async def stop(self) -> None:
        with self._lock:
            self._stopped = True
            started, self._started = self._started, None
        if started is not None:
            await started.stop()


def _lifespan(parts: _Parts) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Start the batcher and the model's loading, and at shutdown stop whichever batcher the service declared."""
    batcher = parts.batcher
    engine_batcher = _EngineBatcher(parts.name) if parts.engine_batches else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if batcher is not None:
            batcher.start()
        parts.holder.start(on_loaded=engine_batcher.on_loaded if engine_batcher else None)
        try:
            yield
        finally:
            if batcher is not None:
                await batcher.stop()
            if engine_batcher is not None:
                await engine_batcher.stop()

    return lifespan


def _build(parts: _Parts, settings: Settings, spec: ServiceSpec) -> FastAPI:
    holder, metrics, name = parts.holder, parts.metrics, parts.name
    # Outermost first: the request id wraps the body limit, so a 413 carries an id and is counted.
    middleware = [
        Middleware(RequestContextMiddleware, metrics=metrics),
        Middleware(BodyLimitMiddleware, limit=parts.body_limit),
    ]
    app = FastAPI(title=parts.title, description=parts.description, version="0.1.0", lifespan=_lifespan(parts), middleware=middleware)
    app.state.settings = settings
    app.state.holder = holder
    app.state.metrics = metrics
    app.state.batcher = parts.batcher
    app.state.body_limit = parts.body_limit
    app.state.service_name = name
    app.state.spec = spec
    for key, value in parts.state.items():
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
    for router in parts.routers:
        app.include_router(router, dependencies=[guard])
    return app
