"""Gather a job's saved steps into `BookContent` and bind it: the PDF, the EPUB (reading along where the book is
narrated) and the audiobook (a chapter per page). Pure apart from reading and writing the job's artifacts.

Each file is bound on its own from the saved steps (`BINDERS`), so each can start the moment what it shows is saved
and the three run side by side on worker threads (`BookBinding`): the audiobook, mostly ffmpeg's work, once every
page is read aloud and the cover painted, typically while the last pictures are still being painted; the PDF once
the words and the pictures are saved; the EPUB, which shows both, last.

A book with a print size gets its PDF on that paper, with the pictures upscaled for print where they exist, and a
print check saved beside it; the EPUB and the audiobook keep the screen-sized pictures."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from webapp.book.audiobook import render_audiobook
from webapp.book.content import BookBrand, BookContent, BookPage
from webapp.book.epub import render_epub
from webapp.book.narration import PageNarration
from webapp.book.pdf import render_pages
from webapp.book.print_check import PrintCheck, check_print
from webapp.book.print_sizes import PrintSize, paper_for
from shared.profiles import RESTYLE
from webapp.book.text_shaping import is_right_to_left_language
from webapp.jobs.artifacts import ArtifactStore
from webapp.jobs.book_links import BookLinks
from webapp.jobs.models import JobRecord
from webapp.jobs.progress import COVER, Artifacts, StoryProgress
from webapp.jobs.store import JobStore
from webapp.story.options import StoryOptions
from webapp.story.plan import StoryPlan
from webapp.story.rules import sentences


@dataclass(frozen=True)
class BoundBook:
    pdf: bytes
    files: list[str]


def book_content(record: JobRecord, progress: StoryProgress, artifacts: ArtifactStore, public_url: str) -> BookContent:
    options = StoryOptions.model_validate(record.options)
    plan = progress.plan
    translation = progress.words
    assert plan is not None and translation is not None, "a book is bound once its plan exists"
    language = progress.language(options.language)

    def image(page: int) -> bytes | None:
        name = Artifacts.picture(page)
        return artifacts.read(record.id, name) if artifacts.exists(record.id, name) else None

    brand = None
    if options.brand:
        brand = BookBrand(
            name=options.brand.name,
            voice=options.brand.voice,
            message=options.brand.message,
            logo_png=artifacts.read(record.id, Artifacts.LOGO) if artifacts.exists(record.id, Artifacts.LOGO) else None,
            primary_color=options.brand.primary_color,
            secondary_color=options.brand.secondary_color,
            cta_url=options.brand.cta_url,
            cta_text=options.brand.cta_text,
        )
    bilingual = options.bilingual and language != "en"
    return BookContent(
        title=translation.title,
        author=options.brand.name if options.brand else "Fabula",
        language=language,
        subject=book_subject(options, plan, progress.language_note),
        cover_png=image(COVER),
        pages=[BookPage(number=index, text=text, image_png=image(index)) for index, text in enumerate(translation.pages, start=1)],
        download_url=BookLinks(public_url, record.book_token or "").reader,
        brand=brand,
        original_title=plan.title if bilingual else None,
        original_texts=[page.text for page in plan.pages] if bilingual else None,
        pictures_note=pictures_note(progress, len(plan.pages)),
    )


RESTYLED_NOTE = "The pictures are the photo restyled on this machine, not painted from the story's words."


def pictures_note(progress: StoryProgress, pages: int) -> str | None:
    """A line for the last page when the pictures were made from the photo (the offline profile's restyler)."""
    painted = [progress.picture(page) for page in (COVER, *range(1, pages + 1))]
    return RESTYLED_NOTE if any(picture is not None and picture.model == RESTYLE for picture in painted) else None


def book_subject(options: StoryOptions, plan: StoryPlan, language_note: str | None) -> str:
    """What the book's metadata says it is about: the reader's idea, else the story's first sentence; never the
    photo's caption (a description of a person's photo does not belong in a book whose link may be shared). A note
    that the book is not in the chosen language goes with it."""
    opening = plan.pages[0].text if plan.pages else ""
    about = (options.idea or "").strip() or next(iter(sentences(opening)), opening)
    return " ".join(part for part in (about[:600], language_note) if part)


def print_content(content: BookContent, record: JobRecord, artifacts: ArtifactStore) -> BookContent:
    """The content with each picture's print copy in place of the screen picture, where one was made."""

    def printed(page: int, screen: bytes | None) -> bytes | None:
        name = Artifacts.print_picture(page)
        return artifacts.read(record.id, name) if screen is not None and artifacts.exists(record.id, name) else screen

    pages = [page.model_copy(update={"image_png": printed(page.number, page.image_png)}) for page in content.pages]
    return content.model_copy(update={"cover_png": printed(COVER, content.cover_png), "pages": pages})


def render_pdf(content: BookContent, record: JobRecord, artifacts: ArtifactStore) -> bytes:
    """The PDF on the book's paper; for a print size, its print check is saved beside it."""
    options = StoryOptions.model_validate(record.options)
    if options.print is PrintSize.screen:
        if artifacts.exists(record.id, Artifacts.PRINT_CHECK):
            artifacts.path(record.id, Artifacts.PRINT_CHECK).unlink()
        return render_pages(content).pdf
    paper = paper_for(options.print)
    rendered = render_pages(print_content(content, record, artifacts), paper=paper, crop_marks=options.crop_marks)
    check = check_print(
        rendered.pdf, rendered.placements, paper, right_to_left=is_right_to_left_language(content.language), crop_marks=options.crop_marks,
    )
    artifacts.write(record.id, Artifacts.PRINT_CHECK, check.model_dump_json(indent=1).encode())
    return rendered.pdf


def saved_print_check(job_id: str, artifacts: ArtifactStore) -> PrintCheck | None:
    """The print check of the book's latest PDF; None for a screen book or one not bound yet."""
    if not artifacts.exists(job_id, Artifacts.PRINT_CHECK):
        return None
    return PrintCheck.model_validate_json(artifacts.read(job_id, Artifacts.PRINT_CHECK))


def narrated_pages(record: JobRecord, progress: StoryProgress, content: BookContent, artifacts: ArtifactStore) -> dict[int, PageNarration]:
    """The narration of each page the book has (0: the title) whose audio is saved."""
    spoken = {page: narration for page, narration in progress.spoken.items() if page <= len(content.pages)}
    return {page: narration for page, narration in spoken.items() if artifacts.exists(record.id, narration.audio_name)}


def bind_pdf(record: JobRecord, store: JobStore, artifacts: ArtifactStore, public_url: str) -> bytes:
    """Render and save the PDF (and, for a print size, its print check)."""
    content = book_content(record, store.progress(record.id), artifacts, public_url)
    pdf = render_pdf(content, record, artifacts)
    artifacts.write(record.id, Artifacts.PDF, pdf)
    return pdf


def bind_epub(record: JobRecord, store: JobStore, artifacts: ArtifactStore, public_url: str) -> bool:
    """Render and save the EPUB, reading along on every narrated page."""
    progress = store.progress(record.id)
    content = book_content(record, progress, artifacts, public_url)
    identifier = str(uuid.uuid5(uuid.NAMESPACE_URL, f"fabula:{record.id}"))
    spoken = narrated_pages(record, progress, content, artifacts)
    artifacts.write(record.id, Artifacts.EPUB, render_epub(content, spoken, lambda name: artifacts.read(record.id, name), identifier=identifier))
    return True


def bind_audiobook(record: JobRecord, store: JobStore, artifacts: ArtifactStore, public_url: str) -> bool:
    """Render and save the audiobook when pages were read aloud (False, and an older audiobook removed, when none was)."""
    progress = store.progress(record.id)
    content = book_content(record, progress, artifacts, public_url)
    spoken = narrated_pages(record, progress, content, artifacts)
    chapters = [
        ("Title" if page == COVER else f"Page {page}", artifacts.read(record.id, spoken[page].audio_name))
        for page in sorted(spoken)
    ]
    if not chapters:
        artifacts.path(record.id, Artifacts.AUDIOBOOK).unlink(missing_ok=True)
        return False
    artifacts.write(record.id, Artifacts.AUDIOBOOK, render_audiobook(content.title, content.author, content.language, chapters, content.cover_png))
    return True


Binder = Callable[[JobRecord, JobStore, ArtifactStore, str], object]
# Every file of a book, in the order a reader asks for them.
BINDERS: dict[str, Binder] = {Artifacts.PDF: bind_pdf, Artifacts.EPUB: bind_epub, Artifacts.AUDIOBOOK: bind_audiobook}


class BookBinding:
    """One binding of a book: each file rendered on a worker thread from the moment `start` is called for it (its
    steps are saved); `finish` starts the rest and waits for all. A file started again (what it shows changed)
    waits for the running render, so the newest always lands last."""

    def __init__(self, store: JobStore, artifacts: ArtifactStore, public_url: str) -> None:
        self.store, self.artifacts, self.public_url = store, artifacts, public_url
        self._renders: dict[str, asyncio.Task[object]] = {}

    def start(self, name: str, record: JobRecord) -> None:
        """Render `name` unless its render is started already."""
        if name not in self._renders:
            self._renders[name] = asyncio.ensure_future(asyncio.to_thread(BINDERS[name], record, self.store, self.artifacts, self.public_url))

    async def again(self, name: str, record: JobRecord) -> None:
        """Render `name` anew: what it shows changed since its render was started."""
        running = self._renders.pop(name, None)
        if running is not None:
            await asyncio.gather(running, return_exceptions=True)
        self.start(name, record)

    async def finish(self, record: JobRecord) -> BoundBook:
        """Every file of the book, saved; the first failure is raised once every render has ended."""
        for name in BINDERS:
            self.start(name, record)
        outcomes = await asyncio.gather(*self._renders.values(), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        made = dict(zip(self._renders, outcomes, strict=True))
        pdf = made[Artifacts.PDF]
        assert isinstance(pdf, bytes), "the PDF's binder returns its bytes"
        return BoundBook(pdf=pdf, files=[name for name in BINDERS if made[name]])

    def cancel(self) -> None:
        """Stop waiting for what was started (a failed book); a render already running on its thread ends there."""
        for render in self._renders.values():
            render.cancel()

