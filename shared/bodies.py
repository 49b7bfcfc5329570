"""One bounded body reader for every service and the web app.

A body is read in chunks and refused with a 413 the moment it passes its limit, so no more than the limit is
ever held; a declared `Content-Length` over the limit is refused before a byte is read. JSON is parsed with a
nesting limit, so a body of 5,000 nested brackets is a 400 rather than a recursion error. Routes that let
FastAPI parse a multipart form get the same limit from `BodyLimitMiddleware`, which cuts the stream off
before the form parser spools it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import ClientDisconnected, InvalidRequest, PayloadTooLarge
from shared.http_errors import describe_validation, send_error

ModelT = TypeVar("ModelT", bound=BaseModel)

# Deeper than any request Fabula reads (a story plan's JSON schema nests about ten levels), far below
# the recursion limit of the JSON decoder and of pydantic.
MAX_JSON_DEPTH = 64
_STRUCTURAL = re.compile(rb'[\[\]{}"\\]')
_OPENERS = frozenset(b"[{")
_CLOSERS = frozenset(b"]}")


@dataclass(frozen=True)
class BodyLimit:
    """The most bytes a body may have, the field a 413 names, and the rule in words (with its setting)."""

    max_bytes: int
    param: str = "body"
    rule: str = ""

    def error(self, size: int, *, at_least: bool = True) -> PayloadTooLarge:
        rule = self.rule or f"the limit is {self.max_bytes:,} bytes"
        return PayloadTooLarge(f"The request body is {'at least ' if at_least else ''}{size:,} bytes; {rule}.", param=self.param)


def declared_length(value: str | bytes | None) -> int | None:
    """A `Content-Length` header's value as a number, or None when absent or not a plain number."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return int(value) if value is not None and value.isdigit() else None


async def read_body(request: Request, limit: BodyLimit) -> bytes:
    """The whole body, refusing it as soon as it passes `limit` (and a declared length over it at once)."""
    declared = declared_length(request.headers.get("content-length"))
    if declared is not None and declared > limit.max_bytes:
        raise limit.error(declared, at_least=False)
    chunks: list[bytes] = []
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit.max_bytes:
                raise limit.error(received)
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientDisconnected("The client closed the connection before the request body arrived.", param=limit.param) from None
    return b"".join(chunks)


def json_depth_exceeds(raw: bytes, max_depth: int) -> bool:
    """Whether brackets outside strings nest deeper than `max_depth` (a linear scan, stopping at the limit)."""
    depth = 0
    in_string = False
    skip_to = -1
    for match in _STRUCTURAL.finditer(raw):
        index = match.start()
        if index < skip_to:
            continue
        character = raw[index]
        if in_string:
            if character == 0x5C:  # a backslash escapes the next character
                skip_to = index + 2
            elif character == 0x22:
                in_string = False
        elif character == 0x22:
            in_string = True
        elif character in _OPENERS:
            depth += 1
            if depth > max_depth:
                return True
        elif character in _CLOSERS:
            depth -= 1
    return False


def parse_json(raw: bytes, *, param: str = "body", max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Decode JSON; every failure is a 400 naming `param` (empty, malformed, not UTF-8, nested too deeply)."""
    if not raw.strip():
        raise InvalidRequest("The request body is empty; send a JSON object.", param=param)
    if json_depth_exceeds(raw, max_depth):
        raise InvalidRequest(f"The request body nests more than {max_depth} levels deep; the limit is {max_depth}.", param=param)
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON (line {exc.lineno}, column {exc.colno}); send a JSON object.", param=param) from None
    except UnicodeDecodeError:
        raise InvalidRequest("The request body is not valid JSON (it is not UTF-8 text); send a JSON object.", param=param) from None
    except RecursionError:
        raise InvalidRequest(f"The request body nests too deeply; the limit is {max_depth} levels.", param=param) from None


def parse_json_object(raw: bytes, *, param: str = "body") -> dict[str, Any]:
    data = parse_json(raw, param=param)
    if not isinstance(data, dict):
        raise InvalidRequest(f"The request body must be a JSON object, not a JSON {type(data).__name__}.", param=param)
    return data


def validate_body(model: type[ModelT], data: dict[str, Any]) -> ModelT:
    """The wire model, or a 400 whose message names each field at fault."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise describe_validation([{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]) from None


async def read_json_model(request: Request, model: type[ModelT], limit: BodyLimit) -> ModelT:
    """Read, bound, parse and validate a JSON body in one call (the decode step of a JSON route)."""
    return validate_body(model, parse_json_object(await read_body(request, limit), param=limit.param))


class BodyLimitMiddleware:
    """Answer 413 for any request to `paths` (every path when None) whose body passes `limit`.

    For routes whose body FastAPI parses (a multipart upload): a declared length over the limit is refused
    before one byte is read, and a chunked body is cut off the moment it passes the limit. Installed inside the
    request-id middleware, so the 413 carries a request id and is counted like every other answer.
    """

    def __init__(self, app: ASGIApp, *, limit: BodyLimit, paths: frozenset[str] | None = None) -> None:
        self.app = app
        self.limit = limit
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (self.paths is not None and scope.get("path") not in self.paths):
            await self.app(scope, receive, send)
            return
        declared = declared_length(dict(scope.get("headers") or []).get(b"content-length"))
        if declared is not None and declared > self.limit.max_bytes:
            await send_error(send, self.limit.error(declared, at_least=False), close=True)
            return
        received = 0
        exceeded = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit.max_bytes:
                    exceeded = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not exceeded:
                await send(message)

        await self.app(scope, counting_receive, guarded_send)
        if exceeded:
            await send_error(send, self.limit.error(received), close=True)


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its `$defs` written in place, for a hand-read body's OpenAPI entry."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            reference = node.get("$ref")
            if isinstance(reference, str) and reference.startswith("#/$defs/"):
                return resolve({**definitions[reference.rsplit("/", 1)[1]], **{k: v for k, v in node.items() if k != "$ref"}})
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    return resolve(schema)


def json_body_openapi(model: type[BaseModel], *, required: bool = True, form: bool = False) -> dict[str, Any]:
    """`openapi_extra` for a route that reads its body by hand, so `/docs` still shows what it takes."""
    schema = inline_schema(model)
    content = {"application/json": {"schema": schema}}
    if form:
        content["application/x-www-form-urlencoded"] = {"schema": schema}
    return {"requestBody": {"required": required, "content": content}}
