"""URLs for a story's resources, and the API's view of a story built from `reading.load_story`."""

from __future__ import annotations

from pathlib import Path

from webapp.api.schemas import PageView, StoryAccepted, StoryLinks, StoryView
from webapp.jobs.book_assembly import saved_print_check
from webapp.jobs.book_links import BookLinks
from webapp.jobs.models import JobRecord
from webapp.jobs.progress import COVER, Artifacts
from webapp.jobs.reading import StoryContent, file_version, load_story
from webapp.jobs.stories import Stories

API_PREFIX = "/api/v1"


def story_path(story_id: str) -> str:
    return f"{API_PREFIX}/stories/{story_id}"


def story_links(record: JobRecord, public_url: str) -> StoryLinks:
    base = story_path(record.id)
    links = BookLinks(public_url, record.book_token or "")
    return StoryLinks(self_url=base, events=f"{base}/events", book=links.pdf, reader=links.reader)


def image_url(story_id: str, page: int, version: int) -> str:
    """`version` (the file's change time) makes a repainted picture a new URL, so no cache shows the old one."""
    return f"{story_path(story_id)}/images/{Artifacts.picture(page)}?v={version}"


def accepted(record: JobRecord, public_url: str) -> StoryAccepted:
    return StoryAccepted(
        id=record.id, status=record.status, stage=record.stage, pages_total=record.pages_total,
        parent_id=record.parent_id, links=story_links(record, public_url),
    )


def story_view(stories: Stories, record: JobRecord, public_url: str) -> StoryView:
    content: StoryContent = load_story(stories, record, public_url)

    def picture(page: int, path: Path | None) -> str | None:
        version = file_version(path)
        return image_url(record.id, page, version) if version is not None else None

    pages = [
        PageView(
            number=page.number, text=page.text, original_text=page.original_text, image_url=picture(page.number, page.image_path),
            audio_url=BookLinks(public_url, record.book_token).file(page.audio_name) if page.audio_name and content.reader_link and record.book_token else None,
            replaced=page.replaced,
        )
        for page in content.pages
    ]
    cover = picture(COVER, content.cover_path)
    return StoryView(
        id=record.id, status=record.status, stage=record.stage, pages_done=record.pages_done, pages_total=record.pages_total,
        error=record.error, error_type=record.error_type, title=content.title, original_title=content.original_title,
        language=str(record.options.get("language", "en")), options=record.options, created_at=record.created_at,
        updated_at=record.updated_at, parent_id=record.parent_id, book_version=record.book_version, cover_url=cover,
        book_url=content.book_link, reader_url=content.reader_link, epub_url=content.epub_link, audiobook_url=content.audiobook_link,
        narration_note=content.narration_note, book_language=content.language, language_note=content.language_note,
        pages=pages, print_check=saved_print_check(record.id, stories.artifacts) if content.book_link else None,
        links=story_links(record, public_url),
    )
