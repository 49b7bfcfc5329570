"""The studio page's callbacks: they drive the same Workshop as the REST API, in this process.

Long actions are async generators that follow the story's progress events and yield a fresh `StoryScreen`
after each, so pages appear as they are painted. A `FabulaError` becomes `gr.Error` with the very message the
API would send; anything unexpected is logged and shown as one plain sentence.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from pathlib import Path
from typing import Any
from collections.abc import AsyncIterator, Callable

import gradio as gr

from shared.errors import FabulaError
from shared.photo_safety import check_photo
from webapp.story.forms import StoryForm, parse_body
from webapp.api.schemas import PageEdit, ReportBody
from webapp.jobs.book_assembly import saved_print_check
from webapp.jobs.following import follow_events
from webapp.api.state import WebState
from webapp.jobs.reading import load_story
from webapp.jobs.models import JobStatus
from webapp.workshop import Workshop
from webapp.ui.render import StoryScreen, story_screen

logger = logging.getLogger(__name__)

_RGB = re.compile(r"rgba?\(\s*([\d.]+)\s*,\s*([\d.]+)\s*,\s*([\d.]+)")


def hex_color(value: str | None) -> str | None:
    """The colour picker may answer '#aabbcc' or 'rgba(170, 187, 204, 1)'; the options want #RRGGBB."""
    if not value:
        return None
    match = _RGB.match(value.strip())
    if match:
        return "#" + "".join(f"{round(float(channel)):02X}" for channel in match.groups())
    return value.strip()


UNEXPECTED = "Something went wrong on our side; the details are in the server log. Please try again."
_CODE = re.compile(r"`([^`]*)`")
_NAMED_UPLOAD = re.compile(r"\b(?:file|image) `(photo|logo)`")
_UPLOAD_NAME = re.compile(r"`(photo|logo)`")


def plain_words(message: str) -> str:
    """A message for a toast, which shows text as typed: "The uploaded file `photo` is …" becomes "The uploaded
    photo is …", and other Markdown code marks are dropped, keeping their words."""
    named = _UPLOAD_NAME.sub(r"the \1", _NAMED_UPLOAD.sub(r"\1", message))
    return _CODE.sub(r"\1", named)


def plain_error(exc: FabulaError, title: str = "Please check") -> gr.Error:
    return gr.Error(plain_words(exc.message), title=title, print_exception=False)


def plain_errors(method: Callable[..., AsyncIterator[tuple]]) -> Callable[..., AsyncIterator[tuple]]:
    """Show every failure as a sentence: Fabula's own message, or one line for the unexpected (logged in full)."""

    @functools.wraps(method)
    async def wrapper(*args: Any, **kwargs: Any) -> AsyncIterator[tuple]:
        try:
            async for item in method(*args, **kwargs):
                yield item
        except gr.Error:
            raise
        except FabulaError as exc:
            raise plain_error(exc) from None
        except Exception:  # noqa: BLE001 - logged with its traceback; the visitor gets a sentence
            logger.exception("studio page action failed")
            raise gr.Error(UNEXPECTED, title="Sorry", print_exception=False) from None

    return wrapper


def _client(request: gr.Request | None) -> str:
    host = getattr(getattr(request, "client", None), "host", None) if request is not None else None
    return "ip:" + (host or "unknown")


class StudioCallbacks:
    def __init__(self, state: WebState) -> None:
        self.state = state

    # ---- making a book -------------------------------------------------------------------------------------
    @plain_errors
    async def generate(
        self,
        photo: str | None,
        pages: float | None = None,
        language: str | None = None,
        style: str | None = None,
        audience: str | None = None,
        tone: str | None = None,
        idea: str | None = None,
        character_names: str | None = None,
        bilingual: bool | None = None,
        narrate: bool | None = None,
        likeness: float | None = None,
        brand_name: str | None = None,
        brand_voice: str | None = None,
        brand_message: str | None = None,
        logo: str | None = None,
        brand_primary_color: str | None = None,
        brand_secondary_color: str | None = None,
        brand_cta_url: str | None = None,
        brand_cta_text: str | None = None,
        print_size: str | None = None,
        crop_marks: bool | None = None,
        request: gr.Request = None,  # type: ignore[assignment]
    ) -> AsyncIterator[tuple]:
        """Make a storybook from a photo; yields the page as it fills in. Returns the PDF, its QR code and link."""
        workshop = self.state.require_workshop()
        if not photo:
            raise gr.Error("Add a photo first: upload one, or click one of the sample photos.", title="No photo yet", print_exception=False)
        # The colour pickers always hold a value, so the brand kit counts as used only when something else is filled in.
        brand_used = any(value and str(value).strip() for value in (brand_name, brand_voice, brand_message, brand_cta_url, brand_cta_text, logo))
        brand = {
            "brand_name": brand_name, "brand_voice": brand_voice, "brand_message": brand_message,
            "brand_primary_color": hex_color(brand_primary_color), "brand_secondary_color": hex_color(brand_secondary_color),
            "brand_cta_url": brand_cta_url, "brand_cta_text": brand_cta_text,
        } if brand_used else {}
        form = StoryForm.model_validate({
            "pages": int(pages) if pages is not None else None, "language": language, "style": style, "audience": audience, "tone": tone,
            "idea": idea, "character_names": character_names, "bilingual": bilingual, "narrate": narrate, "reference_strength": likeness, **brand,
            "print": print_size, "crop_marks": crop_marks,
        })
        options = form.options(max_pages=self.state.settings.max_book_pages, blocked_words=tuple(self.state.settings.blocked_words))
        self.state.limiter.check(_client(request))
        logo_bytes = Path(logo).read_bytes() if logo and brand_used else None
        record = await workshop.stories.submit_upload(Path(photo).read_bytes(), options, logo=logo_bytes, client=_client(request))
        async for screen in self._follow(workshop, record.id, [record.id]):
            yield screen.as_tuple()

    async def check_photo(self, photo: str | None) -> str | None:
        """On upload: say at once when the file is not a photo Fabula can use, and clear it."""
        if not photo:
            return None
        settings = self.state.settings
        try:
            await asyncio.to_thread(check_photo, Path(photo).read_bytes(), settings)
        except FabulaError as exc:
            # A warning, not an error: the upload event then ends normally, so the field shows no error badge.
            gr.Warning(plain_words(exc.message), title="That file cannot be used")
            return None
        return photo

    # ---- stopping a book, and going on ---------------------------------------------------------------------
    @plain_errors
    async def cancel(self, story_id: str | None, versions: list[str], request: gr.Request = None) -> AsyncIterator[tuple]:  # type: ignore[assignment]
        """Stop the book being made; its finished pages are kept."""
        workshop = self.state.require_workshop()
        if not story_id:
            raise gr.Error("No book is being made.", title="Nothing to stop", print_exception=False)
        self.state.limiter.check(_client(request))
        await workshop.stories.cancel(story_id)
        yield self._screen(workshop, story_id, versions, None).as_tuple()

    @plain_errors
    async def resume(self, story_id: str | None, versions: list[str], request: gr.Request = None) -> AsyncIterator[tuple]:  # type: ignore[assignment]
        """Go on with a stopped or failed book from its last saved step."""
        workshop = self.state.require_workshop()
        if not story_id:
            raise gr.Error("Make a book first.", title="Nothing to resume", print_exception=False)
        self.state.limiter.check(_client(request))
        workshop.stories.resume(story_id)
        async for screen in self._follow(workshop, story_id, versions, "Going on from where it stopped…"):
            yield screen.as_tuple()

    # ---- changing a finished book --------------------------------------------------------------------------
    @plain_errors
    async def regenerate_picture(
        self, story_id: str | None, page: int | None, versions: list[str], request: gr.Request = None  # type: ignore[assignment]
    ) -> AsyncIterator[tuple]:
        """Paint one page's picture again (0 is the cover), then bind the book again."""
        workshop, job_id, page = self._edit_target(story_id, page, request)
        workshop.stories.regenerate_image(job_id, page)
        message = f"Painting page {page} again…" if page else "Painting the cover again…"
        async for screen in self._follow(workshop, job_id, versions, message, chosen_page=page):
            yield screen.as_tuple()

    @plain_errors
    async def rewrite_text(
        self, story_id: str | None, page: int | None, instruction: str | None, versions: list[str], request: gr.Request = None  # type: ignore[assignment]
    ) -> AsyncIterator[tuple]:
        """Rewrite one page's text, optionally following an instruction, then bind the book again."""
        workshop, job_id, page = self._edit_target(story_id, page, request)
        edit = parse_body(PageEdit, {"what": "text", "instruction": instruction})
        workshop.stories.rewrite_text(job_id, page, edit.instruction)
        async for screen in self._follow(workshop, job_id, versions, f"Rewriting page {page}…", chosen_page=page):
            yield screen.as_tuple()

    @plain_errors
    async def report_page(
        self, story_id: str | None, page: int | None, what: str | None, reason: str | None, versions: list[str], request: gr.Request = None  # type: ignore[assignment]
    ) -> AsyncIterator[tuple]:
        """Report a page: the report is kept for whoever runs the server, and the page is painted or written again."""
        workshop, job_id, page = self._edit_target(story_id, page, request)
        body = parse_body(ReportBody, {"what": what or "picture", "reason": reason})
        if body.what == "text" and page == 0:
            raise gr.Error("The cover has no text; report its picture, or pick a page from 1.", title="Nothing to rewrite", print_exception=False)
        workshop.stories.report_page(job_id, page, body.what, body.reason, client=_client(request))
        done = "Thank you: the report is kept. " + ("Painting the page again…" if body.what == "picture" else "Writing the page again…")
        async for screen in self._follow(workshop, job_id, versions, done, chosen_page=page):
            yield screen.as_tuple()

    @plain_errors
    async def add_pages(
        self, story_id: str | None, count: float | None, versions: list[str], request: gr.Request = None  # type: ignore[assignment]
    ) -> AsyncIterator[tuple]:
        """Continue the story with more pages, then bind the book again."""
        workshop, job_id, _ = self._edit_target(story_id, 0, request)
        workshop.stories.add_pages(job_id, int(count or 1))
        async for screen in self._follow(workshop, job_id, versions, "Continuing the story…"):
            yield screen.as_tuple()

    @plain_errors
    async def another_version(self, story_id: str | None, versions: list[str], request: gr.Request = None) -> AsyncIterator[tuple]:  # type: ignore[assignment]
        """A new book from the same photo and options; the earlier one is kept and listed."""
        workshop, job_id, _ = self._edit_target(story_id, 0, request)
        record = workshop.stories.new_version(job_id)
        async for screen in self._follow(workshop, record.id, [*versions, record.id]):
            yield screen.as_tuple()

    @plain_errors
    async def show_version(self, version_id: str | None, versions: list[str]) -> AsyncIterator[tuple]:
        workshop = self.state.require_workshop()
        if version_id:
            async for screen in self._follow(workshop, version_id, versions or [version_id]):
                yield screen.as_tuple()

    # ---- shared steps -------------------------------------------------------------------------------------------
    def _edit_target(self, story_id: str | None, page: int | None, request: gr.Request | None) -> tuple[Workshop, str, int]:
        workshop = self.state.require_workshop()
        if not story_id:
            raise gr.Error("Make a book first; then you can change its pages.", title="No book yet", print_exception=False)
        if page is None:
            raise gr.Error("Choose a page first (click a picture, or pick one in the list).", title="No page chosen", print_exception=False)
        self.state.limiter.check(_client(request))
        return workshop, story_id, int(page)

    def _screen(self, workshop: Workshop, story_id: str, versions: list[str], message: str | None, chosen_page: int | None = None) -> StoryScreen:
        content = load_story(workshop.stories, workshop.stories.get(story_id), self.state.public_url)
        titles = {story_id: content.title or ""}
        for version in versions:
            if version not in titles:
                titles[version] = workshop.stories.progress(version).title or ""
        check = saved_print_check(story_id, workshop.artifacts)
        return story_screen(content, versions, titles, message, chosen_page=chosen_page, print_check=check)

    async def _follow(
        self, workshop: Workshop, story_id: str, versions: list[str], first_message: str | None = None, *, chosen_page: int | None = None
    ) -> AsyncIterator[StoryScreen]:
        """One screen now, then one per progress event until the story is done or failed; the Page dropdown stays
        on `chosen_page`, the page being changed."""
        last_status = None
        async for event in follow_events(workshop.stories, story_id):
            message = first_message if last_status is None and first_message else event.message
            last_status = event.status
            yield self._screen(workshop, story_id, versions, message or None, chosen_page)
        if last_status == JobStatus.failed:
            record = workshop.stories.store.get(story_id)
            if record is not None and record.error_type == "cancelled":
                return  # stopped on purpose: the progress line says so, and Resume goes on
            error = record.error if record and record.error else "The book could not be made."
            raise gr.Error(plain_words(error), title="The book could not be finished", print_exception=False)
