"""Reading a small request body that may come as JSON or as a form, into a pydantic model."""

from __future__ import annotations

from typing import TypeVar

from fastapi import Request
from pydantic import BaseModel
from starlette.datastructures import UploadFile

from shared.errors import InvalidRequest
from webapp.api.forms import parse_body

ModelT = TypeVar("ModelT", bound=BaseModel)


async def read_body(request: Request, model: type[ModelT]) -> ModelT:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    data: dict = {}
    if content_type == "application/json":
        raw = await request.body()
        if raw.strip():
            try:
                data = await request.json()
            except ValueError:
                raise InvalidRequest("The request body is not valid JSON.") from None
            if not isinstance(data, dict):
                raise InvalidRequest("The request body must be a JSON object, e.g. {\"what\": \"image\"}.")
    elif content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.form()
        data = {key: value for key, value in form.items() if not isinstance(value, UploadFile)}
    return parse_body(model, data)  # type: ignore[return-value]


def body_schema(model: type[BaseModel]) -> dict:
    """OpenAPI extra for routes that read their body by hand, so /docs still shows it."""
    schema = model.model_json_schema()
    return {
        "requestBody": {
            "required": False,
            "content": {
                "application/json": {"schema": schema},
                "application/x-www-form-urlencoded": {"schema": schema},
            },
        }
    }
