"""Bounded uploads: refuse an oversized body before it is spooled, and read an upload no further than its limit."""

from __future__ import annotations

import json

from fastapi import UploadFile
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import PayloadTooLarge
from shared.images import check_upload_size

CHUNK_BYTES = 1024 * 1024
# Room for the multipart framing and the small form fields that travel beside the file.
FORM_OVERHEAD_BYTES = 256 * 1024


async def read_upload(upload: UploadFile, *, max_bytes: int, param: str = "image") -> bytes:
    """The upload's bytes, read in chunks; raises as soon as more than `max_bytes` have arrived."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await upload.read(CHUNK_BYTES):
        size += len(chunk)
        if size > max_bytes:
            check_upload_size(size, max_bytes=max_bytes, param=param)
        chunks.append(chunk)
    check_upload_size(size, max_bytes=max_bytes, param=param)
    return b"".join(chunks)


class BodyLimitMiddleware:
    """Answer 413 for a request to `path` whose body is clearly bigger than an upload may be.

    A declared Content-Length is refused before one byte is read; a chunked body is cut off once it passes the
    limit. The exact per-file rule (`FABULA_MAX_UPLOAD_BYTES`) is checked by the route; this only keeps a huge
    body from being parsed and spooled to disk first.
    """

    def __init__(self, app: ASGIApp, *, path: str, max_upload_bytes: int, param: str = "image") -> None:
        self.app = app
        self.path = path
        self.max_upload_bytes = max_upload_bytes
        self.max_body_bytes = max_upload_bytes + FORM_OVERHEAD_BYTES
        self.param = param

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") != self.path:
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._refuse(send, int(declared))
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
                if received > self.max_body_bytes:
                    exceeded = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not exceeded:
                await send(message)

        await self.app(scope, counting_receive, guarded_send)
        if exceeded:
            await self._refuse(send, received)

    async def _refuse(self, send: Send, size: int) -> None:
        error = PayloadTooLarge(
            f"The request body is at least {size:,} bytes; an upload `{self.param}` may be at most "
            f"{self.max_upload_bytes:,} bytes (FABULA_MAX_UPLOAD_BYTES).",
            param=self.param,
        )
        body = json.dumps(error.to_body()).encode()
        await send({"type": "http.response.start", "status": error.status_code,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
