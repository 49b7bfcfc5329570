"""ASGI middleware: a request id on every response and log line, and request latency metrics."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.http_errors import ServiceUnavailable, error_for, send_error
from shared.logs import request_id_var
from shared.metrics import ServiceMetrics

logger = logging.getLogger(__name__)
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: ServiceMetrics | None = None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        status_holder = {"status": 500}
        started = time.perf_counter()
        if self.metrics:
            self.metrics.in_flight.labels(self.metrics.service).inc()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = True
                headers = list(message.get("headers") or [])
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            # Answered here rather than by Starlette's outer error middleware, so the body and the log line
            # carry the request id; a dependency's outage met in a middleware is a 503 like a route's.
            error = error_for(exc, request_id)
            if not isinstance(error, ServiceUnavailable):
                logger.exception("unexpected error")
            if status_holder.get("started"):
                raise
            await send_error(send_with_id, error)
        finally:
            request_id_var.reset(token)
            if self.metrics:
                self.metrics.in_flight.labels(self.metrics.service).dec()
                route = scope.get("route")
                path = getattr(route, "path", None) or "unmatched"
                self.metrics.request_seconds.labels(
                    self.metrics.service, path, scope.get("method", ""), str(status_holder["status"])
                ).observe(time.perf_counter() - started)
