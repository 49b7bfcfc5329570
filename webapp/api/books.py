"""The public book links, open to anyone holding the unguessable 256-bit token: the phone reader (the QR code's
target), the PDF, the EPUB, the audiobook, and the pictures and page audio the reader loads."""

from __future__ import annotations

import re
from datetime import datetime, UTC
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from shared.errors import NotFound
from webapp.jobs.book_links import BookLinks
from webapp.jobs.models import JobRecord
from webapp.jobs.progress import Artifacts
from webapp.jobs.reading import book_filename, load_story
from webapp.jobs.stories import Stories
from webapp.reader.model import ReaderBook, ReaderPage

if TYPE_CHECKING:
    from webapp.api.state import WebState

router = APIRouter(tags=["books"])

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
_FILE = re.compile(r"^(?:cover|page-\d{2})\.png$|^(?:title|page-\d{2})\.mp3$")
_GONE = "There is no book at this link: it was deleted, has expired, or the link is mistyped."
PDF, EPUB, AUDIOBOOK = Artifacts.PDF, Artifacts.EPUB, Artifacts.AUDIOBOOK
_FORMATS = {
    PDF: ("application/pdf", ".pdf"),
    EPUB: ("application/epub+zip", ".epub"),
    AUDIOBOOK: ("audio/mp4", ".m4b"),
}
_HEADERS = {"Cache-Control": "no-cache", "X-Robots-Tag": "noindex"}


def _stories(request: Request) -> Stories:
    return request.app.state.web.require_workshop().stories


def _find(stories: Stories, token: str) -> JobRecord | None:
    return stories.find_by_token(token) if _TOKEN.match(token) else None


def _download(request: Request, token: str, name: str) -> FileResponse:
    stories = _stories(request)
    record = _find(stories, token)
    if record is None:
        raise NotFound(_GONE, param="token")
    path = stories.file(record.id, name) if record.book_version > 0 else None
    if path is None:
        missing = "This book has no audiobook: it was not read aloud." if name == AUDIOBOOK else "This book is not bound yet; try again when it is finished."
        raise NotFound(missing, param="token")
    title = stories.progress(record.id).title
    media_type, suffix = _FORMATS[name]
    return FileResponse(
        path, media_type=media_type, filename=book_filename(title).removesuffix(".pdf") + suffix,
        content_disposition_type="inline" if name == PDF else "attachment", headers=_HEADERS,
    )


@router.get("/books/{token}.pdf", summary="Download a finished book (PDF).", response_class=FileResponse,
            responses={200: {"content": {"application/pdf": {}}}, 404: {"description": "Unknown, deleted or expired link."}})
async def download_book(token: str, request: Request) -> FileResponse:
    return _download(request, token, PDF)


@router.get("/books/{token}.epub", summary="Download a finished book (EPUB 3; reads along where narrated).", response_class=FileResponse,
            responses={200: {"content": {"application/epub+zip": {}}}, 404: {"description": "Unknown, deleted or expired link."}})
async def download_epub(token: str, request: Request) -> FileResponse:
    return _download(request, token, EPUB)


@router.get("/books/{token}.m4b", summary="Download the audiobook (M4B, a chapter per page).", response_class=FileResponse,
            responses={200: {"content": {"audio/mp4": {}}}, 404: {"description": "Unknown link, or a book that was not read aloud."}})
async def download_audiobook(token: str, request: Request) -> FileResponse:
    return _download(request, token, AUDIOBOOK)


@router.get("/books/{token}/{name}", summary="A bound book's picture (PNG) or page audio (MP3), as the reader loads them.",
            response_class=FileResponse, responses={404: {"description": "Unknown link or file."}})
async def book_file(token: str, name: str, request: Request) -> FileResponse:
    stories = _stories(request)
    record = _find(stories, token) if _FILE.match(name) else None
    path = stories.file(record.id, name) if record is not None and stories.file(record.id, PDF) else None
    if path is None:
        raise NotFound(_GONE, param="token")
    media_type = "image/png" if name.endswith(".png") else "audio/mpeg"
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "private, max-age=3600"})


def reader_book(state: WebState, token: str) -> ReaderBook | None:
    """The reader's view of a bound book, or None for an unknown, expired or unbound link."""
    stories = state.require_workshop().stories
    record = _find(stories, token)
    if record is None or stories.file(record.id, PDF) is None:
        return None
    content = load_story(stories, record, state.public_url)
    links = BookLinks("", token)
    spoken = stories.progress(record.id).spoken
    pages = [
        ReaderPage(
            number=page.number, text=page.text,
            image_url=links.file(page.image_path.name) if page.image_path else None,
            audio_url=links.file(page.audio_name) if page.audio_name else None,
            sentences=spoken[page.number].sentences if page.number in spoken else [],
        )
        for page in content.pages
    ]
    if not pages:
        return None
    return ReaderBook(
        token=token, title=content.title or "", language=content.language or str(record.options.get("language", "en")),
        author=(record.options.get("brand") or {}).get("name") or "Fabula",
        cover_url=links.file(content.cover_path.name) if content.cover_path else None, pages=pages, pdf_url=links.pdf,
        epub_url=links.epub if content.epub_link else None, audiobook_url=links.audiobook if content.audiobook_link else None,
        expires_at=datetime.fromtimestamp(record.book_expires_at, UTC) if record.book_expires_at else None,
    )
