"""What the studio page shows for a story, computed from `StoryContent` (no I/O beyond reading saved files).

`StoryScreen` lists every value a callback updates, in the order of the UI's output components.
"""

from __future__ import annotations

import html
import io
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from webapp.jobs.reading import PageContent, StoryContent, book_filename
from webapp.book.print_check import PrintCheck
from webapp.book.qr import qr_png
from webapp.jobs.models import STAGE_MESSAGES, JobRecord, JobStatus, Stage
from webapp.jobs.page_tally import PageTally
from webapp.story.languages import find_language

# Where each stage sits on the bar before the pages' own pieces take over (writing, painting and reading aloud
# run side by side, so the bar between them follows what exists, not the stage).
_BEFORE_PAGES = {Stage.queued: 0.02, Stage.caption: 0.05}
_PAGES_START, _PAGES_END, _BINDING = 0.08, 0.92, 0.95
_PAST_CAPTION = (Stage.plan, Stage.illustrate, Stage.narrate, Stage.book, Stage.done)

COVER_CAPTION = "Cover"
PENDING_TEXT = "Being written…"
PENDING_PICTURE = Path(__file__).parent / "assets" / "pending.png"  # the card a page shows until its picture exists
PENDING_PICTURE_NOTE = "being painted"
STOPPED_PICTURE_NOTE = "not painted yet"  # the book stopped (cancelled or failed); Resume paints it
REPLACED_NOTE = "calm placeholder picture"
# Thumbnails per gallery row: four large ones for a short book, six smaller ones once that would pass two rows.
FEW_COLUMNS, MANY_COLUMNS = 4, 6


@dataclass
class StoryScreen:
    progress: str = ""
    book_area: Any = None
    title: str = ""
    cover: str | None = None
    gallery: Any = None
    reader: str = ""
    result: Any = None
    book_file: str | None = None
    qr: Image.Image | None = None
    link: str = ""
    page_choice: Any = None
    editing: Any = None
    story_id: str | None = None
    versions: list[str] = field(default_factory=list)
    version_choice: Any = None

    def as_tuple(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__dataclass_fields__)


@dataclass(frozen=True)
class StepChip:
    label: str
    state: str  # done, current, todo or stopped


def step_chips(record: JobRecord, tally: PageTally | None) -> list[StepChip]:
    """The chips above the bar, each saying what is true now: the photo looked at, then writing, painting and
    reading aloud (side by side, each with its count of pages), then binding."""
    finished, stopped = record.status == JobStatus.done, record.status == JobStatus.failed
    started = record.stage in _PAST_CAPTION
    total = record.pages_total

    def chip(label: str, done: bool, running: bool) -> StepChip:
        state = "done" if finished or done else ("stopped" if stopped else "current") if running else "todo"
        return StepChip(label, state)

    chips = [chip("Looking at the photo", started, record.stage in (Stage.queued, Stage.caption))]
    if tally is not None and total:
        chips.append(chip(f"Writing {tally.written}/{total}", tally.written >= total, started))
        chips.append(chip(f"Painting {tally.painted}/{total}", tally.painted >= total and tally.cover, started))
        if tally.narrated:
            chips.append(chip(f"Reading aloud {tally.read_aloud}/{total}", tally.read_aloud >= total, started))
    chips.append(chip("Binding the book", False, record.stage == Stage.book))
    return chips


def progress_fraction(record: JobRecord, tally: PageTally | None) -> float:
    """How much of the book exists (0–1): the pages' pieces fill most of the bar, binding the last stretch."""
    if record.status == JobStatus.done:
        return 1.0
    if record.stage == Stage.book:
        return _BINDING
    if record.stage in _BEFORE_PAGES or tally is None:
        return _BEFORE_PAGES.get(record.stage, _PAGES_START)
    return _PAGES_START + (_PAGES_END - _PAGES_START) * tally.pieces_done


def progress_html(record: JobRecord, tally: PageTally | None = None, message: str | None = None) -> str:
    """Step chips, a bar and a sentence, e.g. "Page 3 painted. 2 of 8 pages ready." A page is ready when its
    picture, its words in the book's language and (when read aloud) its voice exist."""
    items = [f'<li class="step {chip.state}">{html.escape(chip.label)}</li>' for chip in step_chips(record, tally)]
    if record.status == JobStatus.failed and record.error_type == "cancelled":
        sentence = record.error or "Stopped at your request."
    elif record.status == JobStatus.failed:
        sentence = f"Stopped: {record.error or 'the book could not be made.'}"
    elif record.status == JobStatus.done:
        sentence = f"Your book is ready: {record.pages_total} pages."
    else:
        sentence = message or STAGE_MESSAGES.get(record.stage, "Working…")
        if record.stage in _PAST_CAPTION and tally is not None and record.pages_total:
            sentence += f" {tally.ready} of {record.pages_total} pages ready."
    percent = round(100 * progress_fraction(record, tally))
    ready = tally.ready if tally is not None else record.pages_done
    return (
        f'<div class="fabula-progress" data-status="{record.status.value}" data-stage="{record.stage.value}" '
        f'data-pages-done="{ready}" data-pages-total="{record.pages_total}">'
        f'<ol class="steps">{"".join(items)}</ol>'
        f'<div class="bar" role="progressbar" aria-valuenow="{percent}" aria-valuemin="0" aria-valuemax="100"><span style="width:{percent}%"></span></div>'
        f'<p class="sentence">{html.escape(sentence)}</p></div>'
    )


def reader_html(content: StoryContent) -> str:
    """The story's text, page by page, in its own script and direction (and the English too when bilingual)."""
    if not content.pages:
        return ""
    language = find_language(str(content.record.options.get("language", "en")))
    bilingual = bool(content.record.options.get("bilingual")) and language.code != "en"
    direction = "rtl" if language.rtl else "ltr"
    parts = []
    for page in content.pages:
        if not page.text:  # the outline has settled this page; its words are still being written
            parts.append(f'<article class="page-text pending" data-page="{page.number}"><h4>Page {page.number}</h4><p>{PENDING_TEXT}</p></article>')
            continue
        original = f'<p class="original" lang="en">{html.escape(page.original_text)}</p>' if bilingual else ""
        parts.append(
            f'<article class="page-text" data-page="{page.number}"><h4>Page {page.number}</h4>'
            f'<p lang="{language.code}" dir="{direction}">{html.escape(page.text)}</p>{original}</article>'
        )
    return f'<div class="fabula-reader">{"".join(parts)}</div>'


def page_caption(page: PageContent) -> str:
    """The label under a page's thumbnail; it says when the safety placeholder stands in for the picture."""
    caption = f"Page {page.number}"
    return f"{caption} · {REPLACED_NOTE}" if page.replaced else caption


def gallery_items(content: StoryContent) -> list[tuple[str, str]]:
    """(picture, caption) for the cover and every page the outline has settled, in book order: a page whose
    picture is not painted yet shows the pending card, so every page keeps its place as the pictures arrive."""
    if not content.pages and not content.cover_path:
        return []
    note = PENDING_PICTURE_NOTE if content.record.status in (JobStatus.queued, JobStatus.running) else STOPPED_PICTURE_NOTE
    items = [(str(content.cover_path), COVER_CAPTION) if content.cover_path else (str(PENDING_PICTURE), f"{COVER_CAPTION} · {note}")]
    for page in content.pages:
        items.append((str(page.image_path), page_caption(page)) if page.image_path else (str(PENDING_PICTURE), f"Page {page.number} · {note}"))
    return items


def gallery_columns(count: int) -> int:
    return FEW_COLUMNS if count <= 2 * FEW_COLUMNS else MANY_COLUMNS


def page_choices(content: StoryContent) -> list[tuple[str, int]]:
    """The Page dropdown's choices: the cover (0) once it is painted, then every page of the outline."""
    choices = [(COVER_CAPTION, 0)] if content.cover_path or content.pages else []
    return choices + [(f"Page {page.number}", page.number) for page in content.pages]


def qr_image(link: str) -> Image.Image:
    """The same code the PDF prints, as a picture: 8 pixels per module with the standard quiet zone."""
    return Image.open(io.BytesIO(qr_png(link, box_size=8))).convert("RGB")


def published_book(content: StoryContent) -> str | None:
    """A copy of the PDF named after its title, for the download box (the artifact itself is `book.pdf`).

    It lives in the job's own folder, so deleting the story deletes it; older versions' copies are dropped.
    """
    if content.book_path is None:
        return None
    downloads = content.book_path.parent / "downloads"
    target = downloads / f"v{content.record.book_version}" / book_filename(content.title)
    if not target.is_file():
        shutil.rmtree(downloads, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(content.book_path, target)
    return str(target)


def _anchor(href: str, text: str, css_class: str, *, download: bool = False) -> str:
    saved = " download" if download else ""
    return f'<a class="{css_class}" href="{html.escape(href)}" target="_blank" rel="noopener"{saved}>{html.escape(text)}</a>'


def print_check_html(check: PrintCheck | None) -> str:
    """A print book's check, in the plain lines `fabula story` prints."""
    if check is None:
        return ""
    state = "ready" if check.ready else "not-ready"
    items = "".join(f"<li>{html.escape(line)}</li>" for line in check.lines())
    return f'<div class="print-check {state}" role="status"><p><strong>Print check</strong></p><ul>{items}</ul></div>'


def links_html(content: StoryContent, print_check: PrintCheck | None = None) -> str:
    """The finished book's other formats beside the PDF: the phone reader (the QR code's target), the EPUB and,
    when the book was read aloud, the audiobook; and, when it was not, the reason; a print book's print check."""
    if content.reader_link is None:
        return ""
    formats = [_anchor(content.reader_link, "Read it on a phone", "format-link reader-link")]
    if content.epub_link:
        formats.append(_anchor(content.epub_link, "EPUB (e-readers)", "format-link epub-link", download=True))
    if content.audiobook_link:
        formats.append(_anchor(content.audiobook_link, "Audiobook", "format-link audiobook-link", download=True))
    parts = [f'<p class="formats">{"".join(formats)}</p>']
    if content.narration_note:
        parts.append(f'<p class="narration-note">{html.escape(content.narration_note)}</p>')
    parts.append(f'<p class="share">Share this link: {_anchor(content.reader_link, content.reader_link, "share-link")}</p>')
    parts.append(print_check_html(print_check))
    return "".join(parts)


def title_html(content: StoryContent) -> str:
    if not content.title:
        return ""
    language = find_language(content.language or str(content.record.options.get("language", "en")))
    direction = "rtl" if language.rtl else "ltr"
    heading = f'<h2 class="book-title" lang="{language.code}" dir="{direction}">{html.escape(content.title)}</h2>'
    if content.original_title and content.original_title != content.title:
        heading += f'<p class="original-title" lang="en">{html.escape(content.original_title)}</p>'
    if content.language_note:
        heading += f'<p class="language-note" role="status">{html.escape(content.language_note)}</p>'
    return heading


def story_screen(
    content: StoryContent, versions: list[str], version_titles: dict[str, str], message: str | None = None, *, chosen_page: int | None = None,
    print_check: PrintCheck | None = None,
) -> StoryScreen:
    """Every output for one moment of a story; `chosen_page` keeps the Page dropdown on the page being edited."""
    record = content.record
    finished = record.status == JobStatus.done
    show_book = finished and content.book_link is not None
    pictures = gallery_items(content)
    choices = page_choices(content)
    kept = chosen_page if chosen_page is not None and any(value == chosen_page for _, value in choices) else None
    return StoryScreen(
        progress=progress_html(record, content.tally, message),
        book_area=gr.update(visible=bool(content.pages or content.cover_path)),
        title=title_html(content),
        cover=str(content.cover_path) if content.cover_path else None,
        gallery=gr.update(value=pictures, columns=gallery_columns(len(pictures))),
        reader=reader_html(content),
        result=gr.update(visible=show_book),
        book_file=published_book(content) if show_book else None,
        qr=qr_image(content.reader_link) if show_book and content.reader_link else None,
        link=links_html(content, print_check) if show_book else "",
        page_choice=gr.update(choices=choices, value=kept) if kept is not None else gr.update(choices=choices),
        editing=gr.update(visible=finished),
        story_id=record.id,
        versions=versions,
        version_choice=gr.update(
            choices=[(f"Version {index}: {version_titles.get(job_id) or 'untitled'}", job_id) for index, job_id in enumerate(versions, start=1)],
            value=record.id,
            visible=len(versions) > 1,
        ),
    )
