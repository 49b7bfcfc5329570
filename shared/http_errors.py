"""The one place where errors become HTTP answers: `{"error": {"type", "message", "param"}}` with its status.

Routes raise `FabulaError`s; the handlers installed here (and the raw-ASGI `send_error`, for middleware that
answers before a route runs) serialise them, so every service and the web app answer in one shape.
"""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Send

from shared.errors import AuthenticationFailed, FabulaError, HttpStatusError, InvalidRequest, RateLimited, error_body
from shared.logs import request_id_var

logger = logging.getLogger(__name__)

_SECTIONS = {"body", "query", "path", "header", "form", "cookie"}

__all__ = ["error_body", "error_headers", "error_response", "install_error_handlers", "internal_error", "send_error"]


def internal_error(request_id: str | None = None) -> FabulaError:
    """The plain answer to an unexpected failure: no traceback, only the request id the log line carries."""
    request_id = request_id or request_id_var.get() or "unknown"
    return FabulaError(f"Something went wrong on our side; the details were logged under request id {request_id}.")


def error_headers(exc: FabulaError) -> dict[str, str] | None:
    if isinstance(exc, RateLimited):
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

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error")
        return error_response(internal_error())
