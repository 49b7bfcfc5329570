"""A story as readers see it (title, pages, pictures, book), gathered from the job store and the artifact folder.

Both the REST API (which turns paths into URLs) and the UI (which shows the files) read stories through here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from webapp.jobs.book_links import BookLinks
from webapp.jobs.models import STAGE_MESSAGES, JobEvent, JobRecord, JobStatus
from webapp.jobs.page_tally import PageTally, tally_book
from webapp.jobs.progress import COVER, Artifacts, PaintedPicture
from webapp.jobs.stories import Stories

IMAGE_NAME = re.compile(r"^(cover|page-\d{2})\.png$|^photo\.jpg$")


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
    tally: PageTally | None = None  # how far each page has come (written, painted, read aloud, ready)


def file_version(path: Path | None) -> int | None:
    """The file's change time in nanoseconds, or None when it is missing (a picture being repainted)."""
    if path is None:
        return None
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def _replaced(picture: PaintedPicture | None) -> bool:
    return picture is not None and picture.flagged


def load_story(stories: Stories, record: JobRecord, public_url: str) -> StoryContent:
    """Everything saved so far for one story; pages appear once the outline exists, texts and pictures as they come."""
    progress = stories.progress(record.id)
    content = StoryContent(record=record, language_note=progress.language_note, narration_note=progress.narration_note)
    content.language = progress.language(str(record.options.get("language", "en")))
    words, english = progress.words, progress.english
    if words is not None and english is not None:
        content.title, content.original_title = words.title or english.title, english.title
        spoken = progress.spoken
        for number, (text, original) in enumerate(zip(words.pages, english.pages, strict=True), start=1):
            content.pages.append(
                PageContent(
                    number, text or original, original, stories.file(record.id, Artifacts.picture(number)),
                    audio_name=spoken[number].audio_name if number in spoken else None, replaced=_replaced(progress.picture(number)),
                )
            )
    content.cover_path = stories.file(record.id, Artifacts.picture(COVER))
    content.tally = tally_book(record, progress, stories.artifacts)
    # A first binding renders its files while the last pieces are made: none is shown before the book is bound.
    content.book_path = stories.file(record.id, Artifacts.PDF) if record.book_version > 0 else None
    if content.book_path and record.book_token:
        links = BookLinks(public_url, record.book_token)
        content.book_link, content.reader_link = links.pdf, links.reader
        content.epub_link = links.epub if stories.file(record.id, Artifacts.EPUB) else None
        content.audiobook_link = links.audiobook if stories.file(record.id, Artifacts.AUDIOBOOK) else None
    return content


def current_event(stories: Stories, record: JobRecord) -> JobEvent:
    """The story's state as a progress event: the first thing an events stream sends."""
    last = stories.events.last(record.id)
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
