"""A story as readers see it (title, pages, pictures, book), gathered from the job store and the artifact folder.

Both the REST API (which turns paths into URLs) and the UI (which shows the files) read stories through here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from webapp.jobs.book_assembly import AUDIOBOOK, EPUB, PDF
from webapp.jobs.book_links import BookLinks
from webapp.jobs.models import JobEvent, JobRecord, JobStatus, Stage
from webapp.jobs.narration import narrations
from webapp.jobs.pipeline import COVER, image_name
from webapp.jobs.progress import Steps
from webapp.studio import Studio

IMAGE_NAME = re.compile(r"^(cover|page-\d{2})\.png$|^photo\.jpg$")

STAGE_MESSAGES = {
    Stage.queued: "Waiting for a free slot…",
    Stage.caption: "Looking at the photo…",
    Stage.plan: "Writing the story…",
    Stage.illustrate: "Painting the pictures…",
    Stage.translate: "Translating…",
    Stage.narrate: "Reading the book aloud…",
    Stage.book: "Binding the book…",
    Stage.done: "Your book is ready.",
}


@dataclass
class PageContent:
    number: int
    text: str
    original_text: str
    image_path: Path | None
    audio_name: str | None = None
    replaced: bool = False  # the picture was flagged on every try and shows a calm placeholder


@dataclass
class StoryContent:
    record: JobRecord
    title: str | None = None
    original_title: str | None = None
    cover_path: Path | None = None
    book_path: Path | None = None
    book_link: str | None = None
    reader_link: str | None = None
    epub_link: str | None = None
    audiobook_link: str | None = None
    narration_note: str | None = None
    language: str | None = None  # the language the book is written in
    language_note: str | None = None  # said when that is not the language the reader chose
    pages: list[PageContent] = field(default_factory=list)


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None


def file_version(path: Path | None) -> int | None:
    """The file's change time in nanoseconds, or None when it is missing (a picture being repainted)."""
    if path is None:
        return None
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def load_story(studio: Studio, record: JobRecord, public_url: str) -> StoryContent:
    """Everything saved so far for one story; pages appear once the outline exists, texts and pictures as they come."""
    progress = studio.store.progress(record.id)
    steps = progress.steps
    artifacts = studio.artifacts
    content = StoryContent(record=record)
    content.language_note = progress.language_note
    content.language = progress.language(str(record.options.get("language", "en")))
    plan = steps.get(Steps.PLAN)
    if plan:
        translation = progress.translation
        translated = translation.pages if translation else []
        content.original_title = plan.get("title")
        content.title = (translation.title if translation else None) or content.original_title
        for index, page in enumerate(plan.get("pages", []), start=1):
            text = translated[index - 1] if index - 1 < len(translated) else page.get("text", "")
            content.pages.append(PageContent(index, text, page.get("text", ""), _existing(artifacts.path(record.id, image_name(index)))))
    elif outline := steps.get(Steps.OUTLINE):
        # While the pages are being written: each page shows its text (translated when ready) as soon as it exists.
        in_english = content.language_note is not None
        content.original_title = outline.get("title")
        content.title = None if in_english else (progress.translated("title") or {}).get("text")
        content.title = content.title or content.original_title
        for index, _ in enumerate(outline.get("pages", []), start=1):
            original = (progress.text(index) or {}).get("text", "")
            text = original if in_english else (progress.translated(index) or {}).get("text") or original
            content.pages.append(PageContent(index, text, original, _existing(artifacts.path(record.id, image_name(index)))))
    spoken = narrations(studio.store, record.id)
    for page in content.pages:
        page.audio_name = spoken[page.number].audio_name if page.number in spoken else None
        page.replaced = bool(progress.picture(page.number).get("flagged"))
    content.narration_note = progress.narration_note
    content.cover_path = _existing(artifacts.path(record.id, image_name(COVER)))
    content.book_path = _existing(artifacts.path(record.id, PDF))
    if content.book_path and record.book_token:
        links = BookLinks(public_url, record.book_token)
        content.book_link, content.reader_link = links.pdf, links.reader
        content.epub_link = links.epub if artifacts.exists(record.id, EPUB) else None
        content.audiobook_link = links.audiobook if artifacts.exists(record.id, AUDIOBOOK) else None
    return content


def current_event(studio: Studio, record: JobRecord) -> JobEvent:
    """The story's state as a progress event: the first thing an events stream sends."""
    last = studio.events.last(record.id)
    if record.status == JobStatus.failed:
        message = record.error or "The book could not be made."
    elif last is not None and last.stage == record.stage and last.status == record.status:
        message = last.message
    else:
        message = STAGE_MESSAGES.get(record.stage, "")
    return JobEvent(
        job_id=record.id, status=record.status, stage=record.stage, pages_done=record.pages_done,
        pages_total=record.pages_total, message=message, error=record.error,
    )


def book_filename(title: str | None) -> str:
    """A download name from the book's title: letters of any script, digits, spaces and dashes."""
    cleaned = re.sub(r"[^\w\s-]", "", title or "", flags=re.UNICODE)
    cleaned = re.sub(r"\s+", " ", cleaned).strip()[:80].strip()
    return f"{cleaned or 'Fabula book'}.pdf"
