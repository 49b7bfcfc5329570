"""The one place where errors become HTTP answers: `{"error": {"type", "message", "param"}}` with its status.

Routes raise `FabulaError`s; the handlers installed here (and the raw-ASGI `send_error`, for middleware that
answers before a route runs) serialise them, so every service and the web app answer in one shape.

An outage of something the server depends on (the job database, Redis) is mapped here, once, to a 503
`service_unavailable` with `Retry-After`: routes never catch a driver's connection error themselves.
"""

from __future__ import annotations

import json
import logging
from functools import cache

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Send

from shared.errors import AuthenticationFailed, FabulaError, HttpStatusError, InvalidRequest, RateLimited, error_body
from shared.logs import request_id_var

logger = logging.getLogger(__name__)

_SECTIONS = {"body", "query", "path", "header", "form", "cookie"}

__all__ = [
    "ServiceUnavailable", "error_body", "error_headers", "error_for", "error_response", "install_error_handlers", "internal_error",
    "outage_of", "send_error",
]

# How long a client is asked to wait before it tries again while a dependency is down: long enough for a
# database fail-over or a Redis restart, short enough that a person retrying by hand is not kept waiting.
OUTAGE_RETRY_AFTER_S = 5
DATABASE = "database"
BROKER = "broker"
_WHAT_IS_DOWN = {
    DATABASE: "The job database cannot be reached right now (FABULA_DATABASE_URL)",
    BROKER: "Redis, which queues books and shares limits between replicas, cannot be reached right now (FABULA_BROKER_URL)",
}


class ServiceUnavailable(FabulaError):
    """Something the server depends on is down (`dependency`: "database" or "broker"); nothing was changed."""

    status_code = 503
    error_type = "service_unavailable"

    def __init__(self, message: str, *, dependency: str, retry_after: int = OUTAGE_RETRY_AFTER_S, param: str | None = None) -> None:
        super().__init__(message, param=param)
        self.dependency = dependency
        self.retry_after = retry_after

    @classmethod
    def of(cls, dependency: str) -> ServiceUnavailable:
        return cls(
            f"{_WHAT_IS_DOWN[dependency]}; finished work is kept. Try again in {OUTAGE_RETRY_AFTER_S} s.", dependency=dependency
        )


@cache
def _outage_types() -> tuple[tuple[type[Exception], str], ...]:
    """The connection errors of the drivers this install has, each with the dependency it means."""
    found: list[tuple[type[Exception], str]] = []
    try:
        import sqlalchemy.exc

        # OperationalError: the server refused or dropped the connection; InterfaceError: the connection was
        # unusable; TimeoutError: every pooled connection is stuck waiting on a server that does not answer.
        found += [(sqlalchemy.exc.OperationalError, DATABASE), (sqlalchemy.exc.InterfaceError, DATABASE), (sqlalchemy.exc.TimeoutError, DATABASE)]
    except ImportError:  # pragma: no cover - the web app always has it
        pass
    try:
        import psycopg

        found.append((psycopg.OperationalError, DATABASE))
    except ImportError:
        pass
    try:
        import redis.exceptions

        found += [(redis.exceptions.ConnectionError, BROKER), (redis.exceptions.TimeoutError, BROKER)]
    except ImportError:  # pragma: no cover
        pass
    try:
        import kombu.exceptions  # Celery's publisher, when it cannot hand a book to the broker

        found.append((kombu.exceptions.OperationalError, BROKER))
    except ImportError:  # pragma: no cover
        pass
    return tuple(found)


def outage_of(exc: BaseException) -> ServiceUnavailable | None:
    """The 503 for `exc` when it (or what caused it) is a dependency's connection error; None for anything else."""
    if isinstance(exc, ServiceUnavailable):
        return exc
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for error_type, dependency in _outage_types():
            if isinstance(current, error_type):
                return ServiceUnavailable.of(dependency)
        current = current.__cause__ or current.__context__
    return None


def error_for(exc: BaseException, request_id: str | None = None) -> FabulaError:
    """What to answer for an exception no route turned into a `FabulaError`: a 503 for an outage, else a plain 500."""
    outage = outage_of(exc)
    if outage is not None:
        logger.warning("a dependency is down", extra={"fields": {"dependency": outage.dependency, "error": repr(exc)[:300]}})
        return outage
    return internal_error(request_id)


def internal_error(request_id: str | None = None) -> FabulaError:
    """The plain answer to an unexpected failure: no traceback, only the request id the log line carries."""
    request_id = request_id or request_id_var.get() or "unknown"
    return FabulaError(f"Something went wrong on our side; the details were logged under request id {request_id}.")


def error_headers(exc: FabulaError) -> dict[str, str] | None:
    if isinstance(exc, RateLimited | ServiceUnavailable):
        return {"Retry-After": str(exc.retry_after)}
    if isinstance(exc, AuthenticationFailed):
        return {"WWW-Authenticate": "Bearer"}
    return None


def error_response(exc: FabulaError, *, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(exc.to_body(), status_code=exc.status_code, headers={**(error_headers(exc) or {}), **(headers or {})})


async def send_error(send: Send, exc: FabulaError, *, close: bool = False) -> None:
    """Answer `exc` on a raw ASGI connection (middleware that refuses a request before any route runs)."""
    body = json.dumps(exc.to_body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in (error_headers(exc) or {}).items()]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": exc.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def describe_validation(errors: list[dict]) -> InvalidRequest:
    """Pydantic's errors as one plain sentence per problem, naming the field (at most five)."""
    parts: list[str] = []
    first_param: str | None = None
    for error in errors[:5]:
        if error.get("type") == "json_invalid":
            first_param = first_param or "body"
            parts.append("The request body is not valid JSON.")
            continue
        location = [str(part) for part in error.get("loc", ()) if str(part) not in _SECTIONS]
        param = ".".join(location) or "body"
        first_param = first_param or param
        if error.get("type") == "missing":
            parts.append("The request body is required." if param == "body" else f"`{param}` is required.")
            continue
        message = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
        parts.append(f"`{param}`: {message}." if param else f"{message}.")
    return InvalidRequest(" ".join(parts), param=first_param)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FabulaError)
    async def _fabula_error(_: Request, exc: FabulaError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(describe_validation(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(HttpStatusError(exc.status_code, str(exc.detail)), headers=getattr(exc, "headers", None))

    async def _outage(_: Request, exc: Exception) -> JSONResponse:
        return error_response(error_for(exc))

    # Registered by type (not only under `Exception`), so Starlette answers them inside the middleware stack
    # instead of logging them as crashes.
    for error_type, _dependency in _outage_types():
        app.add_exception_handler(error_type, _outage)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        error = error_for(exc)
        if not isinstance(error, ServiceUnavailable):
            logger.exception("unexpected error")
        return error_response(error)
