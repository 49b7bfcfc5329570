"""Bounded uploads: the body limit of the caption route, and reading an upload no further than its limit."""

from __future__ import annotations

from fastapi import UploadFile

from shared.bodies import BodyLimit
from shared.images import check_upload_size
from shared.settings import Settings

CHUNK_BYTES = 1024 * 1024
# Room for the multipart framing and the small form fields that travel beside the file.
FORM_OVERHEAD_BYTES = 256 * 1024


def upload_body_limit(settings: Settings, *, param: str = "image") -> BodyLimit:
    """The most a multipart body may be: one upload at its limit plus the form around it."""
    return BodyLimit(
        max_bytes=settings.max_upload_bytes + FORM_OVERHEAD_BYTES,
        param=param,
        rule=f"an upload `{param}` may be at most {settings.max_upload_bytes:,} bytes (FABULA_MAX_UPLOAD_BYTES)",
    )


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
