"""Gather a job's saved steps into `BookContent` and bind it: the PDF, the EPUB (reading along where the book is
narrated) and the audiobook (a chapter per page). Pure apart from reading and writing the job's artifacts.

A book with a print size gets its PDF on that paper, with the pictures upscaled for print where they exist, and a
print check saved beside it; the EPUB and the audiobook keep the screen-sized pictures."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from webapp.book.audiobook import render_audiobook
from webapp.book.content import BookBrand, BookContent, BookPage
from webapp.book.epub import render_epub
from webapp.book.pdf import render_pages
from webapp.book.print_check import PrintCheck, check_print
from webapp.book.print_sizes import PrintSize, paper_for
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
    )


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


def bind_book(record: JobRecord, store: JobStore, artifacts: ArtifactStore, public_url: str) -> BoundBook:
    """Render and save every format of the book; the audiobook only when pages were read aloud."""
    progress = store.progress(record.id)
    content = book_content(record, progress, artifacts, public_url)
    pdf = render_pdf(content, record, artifacts)
    artifacts.write(record.id, Artifacts.PDF, pdf)
    spoken = {page: narration for page, narration in progress.spoken.items() if page <= len(content.pages)}
    spoken = {page: narration for page, narration in spoken.items() if artifacts.exists(record.id, narration.audio_name)}
    identifier = str(uuid.uuid5(uuid.NAMESPACE_URL, f"fabula:{record.id}"))
    epub = render_epub(content, spoken, lambda name: artifacts.read(record.id, name), identifier=identifier)
    artifacts.write(record.id, Artifacts.EPUB, epub)
    files = [Artifacts.PDF, Artifacts.EPUB]
    chapters = [
        ("Title" if page == COVER else f"Page {page}", artifacts.read(record.id, spoken[page].audio_name))
        for page in sorted(spoken)
    ]
    if chapters:
        artifacts.write(record.id, Artifacts.AUDIOBOOK, render_audiobook(content.title, content.author, content.language, chapters, content.cover_png))
        files.append(Artifacts.AUDIOBOOK)
    elif artifacts.exists(record.id, Artifacts.AUDIOBOOK):
        artifacts.path(record.id, Artifacts.AUDIOBOOK).unlink()
    return BoundBook(pdf=pdf, files=files)
