"""Exception handlers that turn every failure into `{"error": {"type", "message", "param"}}`."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.errors import FabulaError, RateLimited
from shared.logs import request_id_var

logger = logging.getLogger(__name__)

_SECTIONS = {"body", "query", "path", "header", "form", "cookie"}


def error_body(error_type: str, message: str, param: str | None = None) -> dict:
    return {"error": {"type": error_type, "message": message, "param": param}}


def _describe_validation(errors: list[dict]) -> tuple[str, str | None]:
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
    return " ".join(parts), first_param


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FabulaError)
    async def _fabula_error(_: Request, exc: FabulaError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
        if exc.status_code == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        return JSONResponse(exc.to_body(), status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _describe_validation(list(exc.errors()))
        return JSONResponse(error_body("invalid_request_error", message, param), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        error_type = {404: "not_found", 405: "method_not_allowed", 401: "authentication_error"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(error_type, str(exc.detail)), status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error")
        request_id = request_id_var.get() or "unknown"
        return JSONResponse(
            error_body("internal_error", f"Something went wrong on our side; the details were logged under request id {request_id}."),
            status_code=500,
        )
