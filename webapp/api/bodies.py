"""Reading a small request body that may come as JSON or as a form, into a pydantic model.

The bytes come through the shared bounded reader (a 413 the moment the body passes `MAX_BODY_BYTES`, JSON
parsed with a nesting limit, so 5,000 nested brackets are a 400); a form is then parsed from those bytes, never
from an unbounded stream. Any other content type is a 415 before a byte is read.
"""

from __future__ import annotations

from typing import TypeVar

from fastapi import Request
from pydantic import BaseModel
from starlette.datastructures import UploadFile
from starlette.types import Message

from shared.bodies import BodyLimit, declared_length, json_body_openapi, parse_json_object
from shared.bodies import read_body as read_bounded_body
from shared.errors import HttpStatusError
from webapp.story.forms import parse_body

ModelT = TypeVar("ModelT", bound=BaseModel)

# These bodies hold a few short fields (what to redo, an instruction, a page count).
MAX_BODY_BYTES = 64 * 1024
BODY_LIMIT = BodyLimit(max_bytes=MAX_BODY_BYTES, param="body", rule=f"the limit is {MAX_BODY_BYTES:,} bytes")
_JSON_TYPE = "application/json"
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _has_body(request: Request) -> bool:
    length = declared_length(request.headers.get("content-length"))
    return bool(length) or (length is None and "transfer-encoding" in request.headers)


def readable_body(request: Request) -> None:
    """A dependency: the body is JSON, a form, or absent; anything else is a 415 naming what is taken."""
    content_type = _content_type(request)
    if content_type in (_JSON_TYPE, *_FORM_TYPES) or (not content_type and not _has_body(request)):
        return
    sent = f"a {content_type} body" if content_type else "a body without a Content-Type"
    raise HttpStatusError(
        415, f"This route reads JSON (application/json) or a form (application/x-www-form-urlencoded, multipart/form-data), not {sent}.",
        param="Content-Type",
    )


async def read_body(request: Request, model: type[ModelT]) -> ModelT:
    readable_body(request)
    content_type = _content_type(request)
    data: dict = {}
    if content_type == _JSON_TYPE:
        raw = await read_bounded_body(request, BODY_LIMIT)
        if raw.strip():
            data = parse_json_object(raw)
    elif content_type in _FORM_TYPES:
        raw = await read_bounded_body(request, BODY_LIMIT)
        form = await _replayed(request, raw).form()
        data = {key: value for key, value in form.items() if not isinstance(value, UploadFile)}
    return parse_body(model, data)


def _replayed(request: Request, raw: bytes) -> Request:
    """A request over the same scope whose body is `raw`, already read and bounded."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": raw, "more_body": False}

    return Request(request.scope, receive)


def body_schema(model: type[BaseModel]) -> dict:
    """OpenAPI extra for routes that read their body by hand, so /docs still shows it."""
    return json_body_openapi(model, required=False, form=True)
