"""`render_book`: book content in, PDF bytes out. It reads font files and nothing else: no network, no clock.

The same content gives the same bytes (reportlab's invariant mode), so a book can be cached and re-served.
Fonts come from a `FontLibrary` (the machine's fonts by default); every script's text is embedded as font
subsets, Arabic and Hebrew run right to left, complex scripts are shaped, and text is drawn as plain text,
never parsed as markup. On a print `Paper` each page gets its BleedBox and TrimBox (`print_sizes.page_boxes`), is
clipped to its bleed and, when asked, carries crop marks in a slug around it.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from reportlab import rl_config
from reportlab.pdfgen.canvas import Canvas

from webapp.book.content import BookContent
from webapp.book.fonts import FontLibrary, default_font_library
from webapp.book.images import decode_logo, decode_picture
from webapp.book.pages import CREATOR, SCREEN, PageContext, PicturePlacement, draw_cover, draw_last_page, draw_story_page
from webapp.book.print_sizes import PageBoxes, Paper, page_boxes
from webapp.book.render_lock import RENDER_LOCK
from webapp.book.scripts import clean_text
from webapp.book.text_shaping import is_right_to_left_language
from webapp.book.theme import theme_for


@contextmanager
def _binary_streams() -> Iterator[None]:
    """Write image and page streams as binary instead of ASCII85 (a quarter smaller); restored afterwards."""
    previous = rl_config.useA85
    rl_config.useA85 = 0
    try:
        yield
    finally:
        rl_config.useA85 = previous


@dataclass(frozen=True)
class RenderedBook:
    """The PDF and every cover and story picture as it was placed (for the print check)."""

    pdf: bytes
    placements: list[PicturePlacement]


def render_book(content: BookContent, *, fonts: FontLibrary | None = None) -> bytes:
    """The book as a PDF in the screen layout: a cover, one page per story page, and a last page with the download
    QR code.

    The page count is `len(content.pages) + 2`. Raises `shared.errors.InvalidImage` (naming the field, e.g.
    `pages[2].image_png`) when a picture cannot be decoded.
    """
    return render_pages(content, fonts=fonts).pdf


def render_pages(content: BookContent, *, fonts: FontLibrary | None = None, paper: Paper = SCREEN, crop_marks: bool = False) -> RenderedBook:
    """The book on `paper` (the screen layout by default, or a print size with bleed and trim boxes)."""
    library = fonts or default_font_library()
    theme = theme_for(content.brand)
    cover = decode_picture(content.cover_png, "cover_png") if content.cover_png else None
    logo = decode_logo(content.brand.logo_png) if content.brand and content.brand.logo_png else None
    originals = content.page_originals
    brand_name = content.brand.name if content.brand else None

    buffer = io.BytesIO()
    with RENDER_LOCK, _binary_streams():
        canvas = Canvas(buffer, pagesize=(paper.width, paper.height), invariant=1, pageCompression=1, lang=content.language,
                        initialFontName=library.default_face().name)  # type: ignore[arg-type]  # types-reportlab: a float, wrongly
        canvas.setTitle(clean_text(content.title))
        canvas.setAuthor(clean_text(content.author))
        canvas.setSubject(clean_text(content.subject))
        canvas.setCreator(CREATOR)
        canvas.setKeywords(f"storybook, {content.language}")
        canvas.setViewerPreference("DisplayDocTitle", "true")
        right_to_left = is_right_to_left_language(content.language)
        if right_to_left:
            canvas.setViewerPreference("Direction", "R2L")
        context = PageContext(canvas, library, theme, content.language, paper)
        pages = _Pages(canvas, paper, right_to_left=right_to_left, crop_marks=crop_marks)

        with pages.next():
            draw_cover(context, content, cover, logo)
        for index, (page, original) in enumerate(zip(content.pages, originals, strict=True)):
            picture = decode_picture(page.image_png, f"pages[{index}].image_png") if page.image_png else None
            with pages.next():
                draw_story_page(context, page, original, picture, brand_name)
        with pages.next():
            draw_last_page(context, content, logo)
        canvas.save()
    return RenderedBook(buffer.getvalue(), list(context.placements))


class _Pages:
    """Opens each page on its paper: its boxes, a clip to its bleed, and the origin at its trim's corner."""

    def __init__(self, canvas: Canvas, paper: Paper, *, right_to_left: bool, crop_marks: bool) -> None:
        self.canvas, self.paper, self.right_to_left, self.crop_marks = canvas, paper, right_to_left, crop_marks
        self.index = 0

    @contextmanager
    def next(self) -> Iterator[None]:
        canvas, paper = self.canvas, self.paper
        if not paper.for_print:
            yield
            canvas.showPage()
            return
        boxes = page_boxes(paper, self.index, right_to_left=self.right_to_left, crop_marks=self.crop_marks)
        canvas.setPageSize(boxes.media)
        canvas.setBleedBox(boxes.bleed)
        canvas.setTrimBox(boxes.trim)
        canvas.saveState()
        clip = canvas.beginPath()
        left, bottom, right, top = boxes.bleed
        clip.rect(left, bottom, right - left, top - bottom)
        canvas.clipPath(clip, stroke=0, fill=0)
        canvas.translate(*boxes.origin)
        yield
        canvas.restoreState()
        if self.crop_marks:
            _draw_crop_marks(canvas, boxes)
        canvas.showPage()
        self.index += 1


CROP_MARK_GAP = 2.0  # points between a mark and the bleed, so no mark prints on the page


def _draw_crop_marks(canvas: Canvas, boxes: PageBoxes) -> None:
    """Hairlines on the trim's lines, in the slug outside the bleed."""
    width, height = boxes.media
    trim_left, trim_bottom, trim_right, trim_top = boxes.trim
    bleed_left, bleed_bottom, bleed_right, bleed_top = boxes.bleed
    canvas.setStrokeColorRGB(0, 0, 0)
    canvas.setLineWidth(0.25)
    for x in (trim_left, trim_right):
        canvas.line(x, 0, x, bleed_bottom - CROP_MARK_GAP)
        canvas.line(x, bleed_top + CROP_MARK_GAP, x, height)
    for y in (trim_bottom, trim_top):
        canvas.line(0, y, bleed_left - CROP_MARK_GAP, y)
        canvas.line(bleed_right + CROP_MARK_GAP, y, width, y)
