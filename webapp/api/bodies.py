"""Reading a small request body that may come as JSON or as a form, into a pydantic model.

The bytes come through the shared bounded reader (a 413 the moment the body passes `MAX_BODY_BYTES`, JSON
parsed with a nesting limit); a form is then parsed from those bytes, never from an unbounded stream.
"""

from __future__ import annotations

from typing import TypeVar

from fastapi import Request
from pydantic import BaseModel
from starlette.datastructures import UploadFile
from starlette.types import Message

from shared.bodies import BodyLimit, json_body_openapi, parse_json_object
from shared.bodies import read_body as read_bounded_body
from webapp.api.forms import parse_body

ModelT = TypeVar("ModelT", bound=BaseModel)

# These bodies hold a few short fields (what to redo, an instruction, a page count).
MAX_BODY_BYTES = 64 * 1024
BODY_LIMIT = BodyLimit(max_bytes=MAX_BODY_BYTES, param="body", rule=f"the limit is {MAX_BODY_BYTES:,} bytes")
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


async def read_body(request: Request, model: type[ModelT]) -> ModelT:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    data: dict = {}
    if content_type == "application/json":
        raw = await read_bounded_body(request, BODY_LIMIT)
        if raw.strip():
            data = parse_json_object(raw)
    elif content_type in _FORM_TYPES:
        raw = await read_bounded_body(request, BODY_LIMIT)
        form = await _replayed(request, raw).form()
        data = {key: value for key, value in form.items() if not isinstance(value, UploadFile)}
    return parse_body(model, data)  # type: ignore[return-value]


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
