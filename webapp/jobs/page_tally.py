"""How far each page of a book has come: written, painted, read aloud, and ready.

A page is *ready* when a reader could turn to it: its picture is saved, its words exist in the book's language
(translated, where the book is not in English), and, when the book is read aloud, its narration speaks those words
(or the book's language has no voice, which the book says once). The job record's `pages_done` is the number of
ready pages, so the studio, the REST progress, the events stream and the CLI's bar all count the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass

from webapp.jobs.artifacts import ArtifactStore
from webapp.jobs.models import JobRecord
from webapp.jobs.progress import COVER, Artifacts, StoryProgress


@dataclass(frozen=True)
class PageTally:
    total: int
    written: int = 0
    painted: int = 0
    read_aloud: int = 0
    ready: int = 0
    cover: bool = False
    narrated: bool = True  # whether the book is read aloud at all

    @property
    def pieces_done(self) -> float:
        """The share of the pages' pieces that exist (0–1): words, pictures and, when read aloud, voices."""
        if self.total <= 0:
            return 0.0
        kinds = 3 if self.narrated else 2
        done = self.written + self.painted + (self.read_aloud if self.narrated else 0)
        return done / (kinds * self.total)


def tally_book(record: JobRecord, progress: StoryProgress, artifacts: ArtifactStore) -> PageTally:
    """`tally_pages` for a book, with the language and reading aloud its options ask for."""
    return tally_pages(
        record.id, progress, artifacts, total=record.pages_total,
        language=str(record.options.get("language", "en")), narrate=bool(record.options.get("narrate", True)),
    )


def tally_pages(job_id: str, progress: StoryProgress, artifacts: ArtifactStore, *, total: int, language: str, narrate: bool) -> PageTally:
    """Count what exists for pages 1..`total` of one book; `language` is the one asked for, `narrate` whether the
    book is to be read aloud."""
    words = progress.words
    pages = words.pages if words is not None else []
    in_english = progress.language(language) == "en" or progress.language_note is not None
    silent = not narrate or progress.narration_note is not None
    written = painted = read = ready = 0
    for number in range(1, total + 1):
        text = pages[number - 1] if number <= len(pages) else ""
        has_words = bool(text.strip()) and (progress.plan is not None or in_english or progress.translated(number) is not None)
        has_picture = artifacts.exists(job_id, Artifacts.picture(number))
        spoken = progress.narration_data(number)
        has_voice = silent or (has_words and spoken is not None and spoken.get("text") == text)
        written += has_words
        painted += has_picture
        read += has_voice and has_words
        ready += has_words and has_picture and has_voice
    return PageTally(
        total=total, written=written, painted=painted, read_aloud=read, ready=ready,
        cover=artifacts.exists(job_id, Artifacts.picture(COVER)), narrated=not silent,
    )
