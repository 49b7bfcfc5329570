"""`/read/<token>`: the phone reader behind a book's QR code, and its script, style sheet and icon.

The router is handed a `load(token)` that finds a book (or None); it never reaches for the job store itself, so
the web app decides what a token opens and the tests can serve any book. The token's shape is checked before
`load` runs. Assets come from a fixed table read once at start-up: a request names an entry, never a path.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from webapp.reader.model import ReaderBook
from webapp.reader.page import AssetUrl, render_not_found, render_reader

BookLoader = Callable[[str], ReaderBook | None]

STATIC_DIR = Path(__file__).parent / "static"
TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
ASSET_NAME = re.compile(r"^[a-z0-9-]+\.(?:js|css|svg)$")
MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+$")
# A versioned asset URL (`?v=<hash>`) never changes content, so browsers may keep it for a year.
_LONG_CACHE = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    version: str


def load_assets(folder: Path = STATIC_DIR) -> dict[str, Asset]:
    """Every servable file in `folder`, keyed by name, with a content hash that versions its URL."""
    assets = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and ASSET_NAME.match(path.name):
            body = path.read_bytes()
            assets[path.name] = Asset(body, MEDIA_TYPES[path.suffix], hashlib.sha256(body).hexdigest()[:16])
    return assets


def media_origins(urls: Iterable[str]) -> list[str]:
    """The other origins a book's pictures and clips come from (object storage, a CDN), for the policy."""
    origins = []
    for url in urls:
        if url.startswith("/"):
            continue
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if _ORIGIN.match(origin) and origin not in origins:
            origins.append(origin)
    return origins


def security_headers(origins: Iterable[str] = ()) -> dict[str, str]:
    """The reader runs only its own script and style; pictures and audio come from itself or the book's origins."""
    media = " ".join(["'self'", *origins])
    policy = (
        f"default-src 'none'; script-src 'self'; style-src 'self'; img-src {media}; media-src {media}; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Robots-Tag": "noindex",
        "Cache-Control": "no-cache",
    }


def reader_router(load: BookLoader, *, static_dir: Path = STATIC_DIR) -> APIRouter:
    """`GET /read/{token}` (the reader, or a 404 page in its look) and `GET /read/assets/{name}`.

    `load` is called in the server's thread pool, so a quick blocking look-up (SQLite) is fine.
    """
    assets = load_assets(static_dir)
    router = APIRouter(tags=["reader"])

    def asset_urls(request: Request) -> AssetUrl:
        def asset_url(name: str) -> str:
            return f"{request.url_for('reader_asset', name=name).path}?v={assets[name].version}"

        return asset_url

    @router.get("/read/assets/{name}", name="reader_asset", include_in_schema=False)
    def reader_asset(name: str, request: Request) -> Response:
        asset = assets.get(name) if ASSET_NAME.match(name) else None
        if asset is None:
            return Response("Not found\n", status_code=404, media_type="text/plain", headers={"X-Content-Type-Options": "nosniff"})
        etag = f'"{asset.version}"'
        headers = {
            "Cache-Control": _LONG_CACHE if request.query_params.get("v") == asset.version else "no-cache",
            "ETag": etag,
            "X-Content-Type-Options": "nosniff",
        }
        if etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        return Response(asset.body, media_type=asset.media_type, headers=headers)

    @router.get(
        "/read/{token}",
        name="reader_page",
        summary="Read a book on a phone: one page at a time, read aloud, the sentence being read highlighted.",
        response_class=HTMLResponse,
        responses={404: {"description": "Unknown, deleted or expired link (an HTML page).", "content": {"text/html": {}}}},
    )
    def read_book(token: str, request: Request) -> HTMLResponse:
        book = load(token) if TOKEN.match(token) else None
        if book is None or book.has_expired():
            return HTMLResponse(render_not_found(asset_urls(request)), status_code=404, headers=security_headers())
        return HTMLResponse(render_reader(book, asset_urls(request)), headers=security_headers(media_origins(book.media_urls())))

    return router
