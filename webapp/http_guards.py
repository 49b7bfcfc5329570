"""The web app's guards at the edge, one concern per class, installed in front of every route and the studio.

- `SameOriginGuard`: a change (POST, PUT, PATCH, DELETE) sent by another site's page is refused with a 403.
- `LoginThrottle`: the studio's login counts wrong passwords in the same counter as the API's wrong keys.
- `KnownRouteGuard`: a wrong method on a known path is a 405 with `Allow`; an unknown path under /api/v1 a 404.
- `NotFoundShape`: the framework's bare 404 (`{"detail": "Not Found"}`, from the studio's mount) in the error shape.
- `upload_limit`: the limit `BodyLimitMiddleware` puts on the photo uploads (the REST form and Gradio's upload);
  `EndsOnDisconnect` lets a route whose body the limit cut off end without an error, so the 413 is sent.
- `BookFilesGuard` (with `StudioCopies`): a story's files stop being served through Gradio's file route once
  its book has expired or the story is deleted, whether Gradio serves the file itself or its cached copy.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect, Request
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth import KeyFailureCounter, check_key, client_address
from shared.bodies import BodyLimit
from shared.errors import FabulaError, HttpStatusError, NotFound, PayloadTooLarge, RateLimited
from shared.http_errors import error_response, send_error
from shared.settings import Settings
from webapp.api.links import API_PREFIX
from webapp.api.state import WebState

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
GRADIO_FILE_PREFIX = "/gradio_api/file="
# The routes that take a photo: the REST form and Gradio's upload (and its recording upload).
UPLOAD_PATHS = frozenset({f"{API_PREFIX}/stories", "/gradio_api/upload", "/gradio_api/process_recording"})
# What an upload's form carries beside its files: the options' fields and the multipart boundaries.
UPLOAD_FORM_MARGIN = 64 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}
_GONE = "There is no book at this link: it was deleted, has expired, or the link is mistyped."


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or []:
        if key == name:
            return value.decode("latin-1")
    return None


# ---- cross-site changes ---------------------------------------------------------------------------------------
def _origin(url: str | None) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin or URL, the port filled in from the scheme; None when it has none."""
    if not url:
        return None
    parts = urlsplit(url.strip())
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    try:
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
    except ValueError:
        return None
    return parts.scheme, parts.hostname.lower(), port


def _is_own_host(origin: tuple[str, str, int], host_header: str | None) -> bool:
    """Whether `origin` names the host the request was sent to. A Host without a port stands for the origin's
    default port, so a page behind a TLS proxy (Origin https://example.com, Host example.com) is its own."""
    if not host_header:
        return False
    host = urlsplit(f"//{host_header.strip()}")
    try:
        port = host.port
    except ValueError:
        return False
    if (host.hostname or "").lower() != origin[1]:
        return False
    return port == origin[2] if port is not None else origin[2] == _DEFAULT_PORTS[origin[0]]


class SameOriginGuard:
    """Refuse a change whose `Origin` (or `Sec-Fetch-Site: cross-site`) says another site's page sent it.

    A browser attaches the studio's login cookie to a form another site posts here; with no API key set,
    nothing else would stop that page from making, editing or deleting books in a visitor's name. Requests from
    the server's own pages, from `FABULA_PUBLIC_URL`'s origin, and without an `Origin` (curl, the SDKs) pass;
    so does any request that carries the valid API key.
    """

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.public_origin = _origin(settings.public_url)
        self.api_key = settings.api_key.get_secret_value().encode() if settings.api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") in UNSAFE_METHODS and self._cross_site(scope) and not self._has_key(scope):
            await send_error(send, HttpStatusError(403, self._refusal(_header(scope, b"origin")), param="Origin"))
            return
        await self.app(scope, receive, send)

    def _cross_site(self, scope: Scope) -> bool:
        sent_origin = _header(scope, b"origin")
        if sent_origin is not None:
            origin = _origin(sent_origin)  # "null" (a sandboxed page, a local file) parses to None: not ours
            return origin is None or not (origin == self.public_origin or _is_own_host(origin, _header(scope, b"host")))
        return (_header(scope, b"sec-fetch-site") or "").strip().lower() == "cross-site"

    def _has_key(self, scope: Scope) -> bool:
        if not self.api_key:
            return False
        scheme, _, token = (_header(scope, b"authorization") or "").partition(" ")
        return scheme.lower() == "bearer" and secrets.compare_digest(token.strip().encode(), self.api_key)

    def _refusal(self, sent_origin: str | None) -> str:
        source = f"another site ({sent_origin})" if sent_origin else "another site"
        return (
            f"This change was sent from {source}; Fabula takes changes only from its own pages. If people open it at "
            "another address, set FABULA_PUBLIC_URL to that address; programs send no Origin header, or the API key."
        )


# ---- the studio's login -----------------------------------------------------------------------------------------
LOGIN_PATHS = frozenset({"/login", "/login/"})
# A user name and a password, as a form: far more than any real one.
MAX_LOGIN_BODY = 16 * 1024


class LoginThrottle:
    """Count the studio's wrong passwords (the password is the API key) with the API's wrong keys.

    Gradio's login route has no limit of its own, so without this the key could be guessed there hundreds of
    times a second while `/api/v1` was refusing the same address. A wrong password from an address that has used
    its tries is answered 429 before Gradio sees it; the right key always reaches Gradio, which logs the user in.
    """

    def __init__(self, app: ASGIApp, *, api_key: str | None, failures: KeyFailureCounter) -> None:
        self.app = app
        self.api_key = api_key
        self.failures = failures

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (self.api_key and scope["type"] == "http" and scope.get("method") == "POST" and scope.get("path") in LOGIN_PATHS):
            await self.app(scope, receive, send)
            return
        body = await _small_body(receive, MAX_LOGIN_BODY)
        if body is None:
            await send_error(send, PayloadTooLarge(f"A login may be at most {MAX_LOGIN_BODY:,} bytes.", param="body"), close=True)
            return
        replay = _replaying(body, receive)
        password = await _form_field(scope, replay(), "password")
        try:
            await asyncio.to_thread(check_key, password, self.api_key, client_address(Request(scope)), self.failures)
        except RateLimited as refused:
            await send_error(send, refused)
            return
        await self.app(scope, replay(), send)


async def _small_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None once it passes `limit` (a client that left sends what it sent: Gradio refuses it)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replaying(body: bytes, receive: Receive) -> Callable[[], Receive]:
    """Each call: a fresh `receive` that hands over `body` once, then the connection's own (its disconnect)."""

    def fresh() -> Receive:
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay

    return fresh


async def _form_field(scope: Scope, receive: Receive, name: str) -> str:
    """One text field of a urlencoded or multipart form; "" when the body is not a form or lacks it."""
    request = Request(scope, receive)
    try:
        form = await request.form(max_files=0, max_fields=16)
    except Exception:  # noqa: BLE001 - a body that is not a form has no password: it is a wrong one
        return ""
    try:
        value = form.get(name)
        return value if isinstance(value, str) and not isinstance(value, UploadFile) else ""
    finally:
        await form.close()


# ---- methods and paths ----------------------------------------------------------------------------------------
class KnownRouteGuard:
    """A wrong method on one of the app's own paths is a 405 with `Allow`; an unknown path under /api/v1 is a 404.

    The studio is mounted at /, so without this every request no route takes in full falls through to Gradio,
    which answers in its own shape (a 404 for a DELETE on /api/v1/options).
    """

    def __init__(self, app: ASGIApp, *, routes: list) -> None:
        self.app = app
        self.routes = routes  # the app's own router's list, read at each request (routes may be added after)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = self._match(scope) if scope["type"] == "http" else Match.FULL
        if match == Match.FULL:
            await self.app(scope, receive, send)
            return
        # Which methods the path takes, asked of the routes themselves (an included router lists no methods).
        allowed = [method for method in _METHODS if match == Match.PARTIAL and self._match({**scope, "method": method}) == Match.FULL]
        path = scope.get("path", "")
        error: FabulaError | None = None
        headers = None
        if allowed:
            methods = ", ".join(allowed)
            error = HttpStatusError(405, f"{scope.get('method')} is not allowed on {path}; it takes {methods}.", param="method")
            headers = {"Allow": methods}
        elif path == API_PREFIX or path.startswith(API_PREFIX + "/"):
            error = NotFound(f"There is no API route at {path}; see /docs for the routes under {API_PREFIX}.", param="path")
        if error is None:
            await self.app(scope, receive, send)
            return
        await error_response(error, headers=headers)(scope, receive, send)

    def _match(self, scope: Scope) -> Match:
        best = Match.NONE
        for route in self.routes:
            if isinstance(route, Mount):
                continue
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return match
            if match == Match.PARTIAL:
                best = match
        return best


class NotFoundShape:
    """Rewrite the framework's own 404 body, `{"detail": "Not Found"}`, into `{"error": {...}}` naming the path.

    Gradio, mounted at /, answers every path no route takes in FastAPI's default shape. Only that exact body is
    rewritten: Gradio's other answers (its queue's errors, say) are read by its own page and stay as they are.
    """

    _BARE = {"detail": "Not Found"}
    _MAX_HELD = 4096  # the bare body is 22 bytes; a bigger 404 is some route's own answer, passed on as it comes

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        held: list[Message] = []
        size = 0

        async def shaping_send(message: Message) -> None:
            nonlocal size
            if message["type"] == "http.response.start" and message["status"] == 404:
                held.append(message)
                return
            if not held:
                await send(message)
                return
            held.append(message)
            size += len(message.get("body", b""))
            if message["type"] == "http.response.body" and message.get("more_body", False) and size <= self._MAX_HELD:
                return
            body = b"".join(part.get("body", b"") for part in held[1:])
            messages, held[:] = list(held), []
            if not message.get("more_body", False) and self._is_bare(body):
                path = scope.get("path", "")
                await send_error(send, NotFound(f"There is nothing at {path[:200]}.", param="path"))
                return
            for part in messages:
                await send(part)

        await self.app(scope, receive, shaping_send)

    def _is_bare(self, body: bytes) -> bool:
        try:
            return bool(json.loads(body) == self._BARE)
        except ValueError:
            return False


# ---- upload size ----------------------------------------------------------------------------------------------
def upload_limit(settings: Settings) -> BodyLimit:
    """The most an upload's body may be: FABULA_MAX_UPLOAD_BYTES for its files, plus a small margin for the form."""
    limit = settings.max_upload_bytes
    return BodyLimit(
        max_bytes=limit + UPLOAD_FORM_MARGIN,
        param="photo",
        rule=f"an upload may be at most {limit:,} bytes (FABULA_MAX_UPLOAD_BYTES), plus {UPLOAD_FORM_MARGIN:,} bytes for the form",
    )


class EndsOnDisconnect:
    """Let a route on `paths` whose body stopped coming end quietly, so `BodyLimitMiddleware` (installed outside
    it) still answers its 413. Gradio's upload route lets `ClientDisconnect` escape as a server error when the
    limit cuts its body off; a client that really went away reads no answer either way."""

    def __init__(self, app: ASGIApp, *, paths: frozenset[str]) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") not in self.paths:
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        except ClientDisconnect:
            return


# ---- a story's files through Gradio ---------------------------------------------------------------------------
class GradioCopies:
    """Which story each copy in Gradio's cache was made from, kept on disk so it outlives a restart.

    Gradio serves a file the studio hands it from a copy in its cache (for up to a day), under a folder named
    by the content's hash; nothing in that path says which story it belongs to. A marker file per copy, named
    by the copy's path, lists the stories whose files it was copied from (two stories may share a picture).
    """

    def __init__(self, folder: Path, artifacts_root: Path) -> None:
        self.folder = folder
        self.artifacts_root = Path(os.path.abspath(artifacts_root)).resolve()

    def story_of(self, path: str | Path) -> str | None:
        """The story whose artifact folder holds `path`, or None when it lies outside every story's folder."""
        for candidate in _spellings(path):
            try:
                relative = candidate.relative_to(self.artifacts_root)
            except ValueError:
                continue
            return relative.parts[0] if relative.parts else None
        return None

    def note(self, source: str | Path | None, copy: str | Path | None) -> None:
        """Remember that Gradio copied `source` to `copy` (nothing to remember unless `source` is a story's)."""
        if source is None or copy is None:
            return
        story = self.story_of(source)
        if story is None or str(copy) == str(source):
            return
        marker = self._marker(copy)
        if story in self._stories(marker):
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        with marker.open("a", encoding="utf-8") as stream:  # the copy's path first, then one line per story
            stream.write(("" if marker.stat().st_size else os.path.abspath(str(copy)) + "\n") + story + "\n")

    def stories_of(self, copy: str | Path) -> set[str] | None:
        """The stories a copy was made from, or None for a file the studio never handed out (an upload, a sample)."""
        stories = self._stories(self._marker(copy))
        return stories or None

    def forget_missing(self) -> int:
        """Drop the markers of copies Gradio has since deleted; returns how many went."""
        if not self.folder.is_dir():
            return 0
        dropped = 0
        for marker in self.folder.glob("*.copy"):
            lines = marker.read_text(encoding="utf-8").splitlines()
            if not lines or not Path(lines[0]).exists():
                marker.unlink(missing_ok=True)
                dropped += 1
        return dropped

    def _marker(self, copy: str | Path) -> Path:
        return self.folder / (hashlib.sha256(os.path.abspath(str(copy)).encode()).hexdigest()[:40] + ".copy")

    def _stories(self, marker: Path) -> set[str]:
        try:
            lines = marker.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return set()
        return {line for line in lines[1:] if line}


def _spellings(path: str | Path) -> list[Path]:
    """The path as Gradio reads it (absolute, `..` folded) and with its links followed."""
    absolute = Path(os.path.abspath(str(path)))
    return [absolute, absolute.resolve()]


class BookFilesGuard:
    """Refuse Gradio's file route (`/gradio_api/file=…`) for a story's files once its book expired or it is gone.

    A path inside the artifacts folder names its story; a copy in Gradio's cache is looked up in `StudioCopies`.
    Anything else (uploads, the sample photos, Gradio's own files) passes untouched.
    """

    def __init__(self, app: ASGIApp, *, state: WebState, copies: GradioCopies) -> None:
        self.app = app
        self.state = state
        self.copies = copies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path.startswith(GRADIO_FILE_PREFIX):
            requested = path[len(GRADIO_FILE_PREFIX):]
            story = self.copies.story_of(requested)
            stories = {story} if story is not None else self.copies.stories_of(requested)
            if stories is not None and not any(self._book_is_open(story) for story in stories):
                await send_error(send, NotFound(_GONE, param="path"))
                return
        await self.app(scope, receive, send)

    def _book_is_open(self, story_id: str) -> bool:
        workshop = self.state.workshop
        record = workshop.store.get(story_id) if workshop is not None else None
        return record is not None and (record.book_expires_at is None or record.book_expires_at >= time.time())
