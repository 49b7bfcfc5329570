"""The public book link (the QR code's target): open to anyone holding the unguessable 256-bit token."""

from __future__ import annotations

import re
import time

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from shared.errors import NotFound
from webapp.api.views import book_filename

router = APIRouter(tags=["books"])

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
_GONE = "There is no book at this link: it was deleted, has expired, or the link is mistyped."


@router.get(
    "/books/{token}.pdf",
    summary="Download a finished book (PDF).",
    response_class=FileResponse,
    responses={200: {"content": {"application/pdf": {}}}, 404: {"description": "Unknown, deleted or expired link."}},
)
async def download_book(token: str, request: Request) -> FileResponse:
    studio = request.app.state.web.require_studio()
    record = studio.store.find_by_token(token) if _TOKEN.match(token) else None
    if record is None or (record.book_expires_at is not None and record.book_expires_at < time.time()):
        raise NotFound(_GONE, param="token")
    path = studio.artifacts.path(record.id, "book.pdf")
    if not path.is_file():
        raise NotFound("This book is not bound yet; try again when it is finished.", param="token")
    steps = studio.store.steps(record.id)
    title = (steps.get("translation") or {}).get("title") or (steps.get("plan") or {}).get("title")
    return FileResponse(
        path, media_type="application/pdf", filename=book_filename(title), content_disposition_type="inline",
        headers={"Cache-Control": "no-cache", "X-Robots-Tag": "noindex"},
    )
