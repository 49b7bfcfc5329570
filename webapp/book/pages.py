"""The three kinds of page a book has: the cover, a story page (picture on top, text below), the last page (QR code).

Pages are drawn in the coordinates of their trim, on the book's `Paper`: the square 8.5-inch screen layout by
default, or a print size (`print_sizes`), whose cover colour runs into the bleed. Text boxes shrink their type to
fit, down to a readable minimum, so a long page never runs off the paper. Every picture drawn on a cover or story
page is recorded in `PageContext.placements`, so the print check can tell its effective resolution.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reportlab.lib.colors import HexColor, white
from reportlab.lib.units import inch
from reportlab.pdfgen.canvas import FILL_NON_ZERO, Canvas  # type: ignore[attr-defined]  # missing from types-reportlab

from webapp.book.content import BookBrand, BookContent, BookPage
from webapp.book.fonts import FontLibrary
from webapp.book.images import BookImage
from webapp.book.labels import scan_to_read, the_end
from webapp.book.layout import TextSetter, draw_block, fit_block
from webapp.book.print_sizes import PAPERS, Paper, PrintSize
from webapp.book.qr import qr_modules
from webapp.book.theme import Theme, contrast

SCREEN = PAPERS[PrintSize.screen]
PAGE_WIDTH = SCREEN.width
PAGE_HEIGHT = SCREEN.height
PAGE_SIZE = (PAGE_WIDTH, PAGE_HEIGHT)
QR_SIZE = 2.8 * inch
CREATOR = "Fabula"


@dataclass(frozen=True)
class PicturePlacement:
    """A story picture as printed: its page (0 for the cover), the pixels embedded and its size on paper in points."""

    page: int
    pixels: tuple[int, int]
    width: float
    height: float

    @property
    def dpi(self) -> float:
        """Effective resolution: the pixels over the printed inches, on the scarcer axis."""
        return min(self.pixels[0] / (self.width / 72), self.pixels[1] / (self.height / 72))


@dataclass(frozen=True)
class PageContext:
    canvas: Canvas
    library: FontLibrary
    theme: Theme
    language: str
    paper: Paper = SCREEN
    placements: list[PicturePlacement] = field(default_factory=list)

    def place(self, page: int, picture: BookImage, *, x: float, y: float, width: float, height: float) -> None:
        """Draw a cover or story picture and record how large it is printed."""
        draw_picture(self.canvas, picture, x=x, y=y, width=width, height=height)
        self.placements.append(PicturePlacement(page, picture.embedded_size(width, height), width, height))


def draw_picture(
    canvas: Canvas, picture: BookImage, *, x: float, y: float, width: float, height: float, radius: float = 12
) -> None:
    """A picture with rounded corners, its lower-left corner at (x, y)."""
    canvas.saveState()
    path = canvas.beginPath()
    path.roundRect(x, y, width, height, radius)
    canvas.clipPath(path, stroke=0, fill=0)
    mask = "auto" if picture.image.mode == "RGBA" else None
    canvas.drawImage(picture.reader(width, height), x, y, width, height, mask=mask)
    canvas.restoreState()


def draw_qr(canvas: Canvas, url: str, *, x: float, y: float, size: float) -> None:
    """The QR code as vector squares on white (quiet zone included), lower-left corner at (x, y)."""
    modules = qr_modules(url)
    module = size / len(modules)
    overlap = module * 0.06
    canvas.setFillColor(white)
    canvas.rect(x, y, size, size, stroke=0, fill=1)
    path = canvas.beginPath()
    for row_index, row in enumerate(modules):
        top = y + size - (row_index + 1) * module
        column = 0
        while column < len(row):
            if row[column]:
                start = column
                while column < len(row) and row[column]:
                    column += 1
                # A hair of overlap so viewers' anti-aliasing leaves no light seams between rows.
                path.rect(x + start * module, top - overlap, (column - start) * module, module + overlap)
            else:
                column += 1
    canvas.setFillColor(HexColor("#000000"))
    # Non-zero winding: with the default even-odd rule the overlaps between rows would be holes (white seams).
    canvas.drawPath(path, stroke=0, fill=1, fillMode=FILL_NON_ZERO)
    canvas.linkURL(url, (x, y, x + size, y + size), relative=0, thickness=0)


def draw_cover(context: PageContext, content: BookContent, cover: BookImage | None, logo: BookImage | None) -> None:
    canvas, theme, library, paper = context.canvas, context.theme, context.library, context.paper
    bleed = paper.bleed  # the colours run past the trim (the page is clipped to its BleedBox)
    canvas.setFillColor(theme.primary)
    canvas.rect(-bleed, -bleed, paper.width + 2 * bleed, paper.height + 2 * bleed, stroke=0, fill=1)
    canvas.setFillColor(theme.secondary)
    canvas.rect(-bleed, -bleed, paper.width + 2 * bleed, 0.22 * inch + bleed, stroke=0, fill=1)

    title = fit_block(library, content.title, width=paper.text_width, height=(1.9 if cover else 3.5) * inch,
                      max_size=34 if cover else 42, min_size=16, language=context.language, bold=True, leading=1.3)
    original = None
    if content.original_title:
        original = fit_block(library, content.original_title, width=paper.text_width, height=0.6 * inch, max_size=15,
                             min_size=10, language=None)
    heading_height = title.height + (original.height + 4 if original is not None else 0)
    # Without cover art the title stands a little above the middle of the page.
    top = paper.height - paper.margin * 0.8 if cover is not None else (paper.height + heading_height) / 2 + 0.4 * inch
    draw_block(canvas, title, x=paper.margin, top=top, width=paper.text_width, color=theme.on_primary, align="center")
    top -= title.height + 4
    if original is not None:
        accent = theme.secondary if contrast(theme.secondary, theme.primary) >= 3 else theme.on_primary
        draw_block(canvas, original, x=paper.margin, top=top, width=paper.text_width, color=accent, align="center")
        top -= original.height + 4

    author = TextSetter(library, size=14, language=context.language).block(content.author, width=paper.text_width)
    bottom = 0.22 * inch + paper.foot
    draw_block(canvas, author, x=paper.margin, top=bottom + author.height, width=paper.text_width, color=theme.on_primary, align="center")
    bottom += author.height + 8
    if logo is not None:
        width, height = logo.fit(2.0 * inch, 0.6 * inch)
        draw_picture(canvas, logo, x=(paper.width - width) / 2, y=bottom, width=width, height=height, radius=0)
        bottom += height + 10

    if cover is not None:
        frame = 6
        width, height = cover.fit(paper.width - 2 * paper.margin - 2 * frame, top - bottom - 24 - 2 * frame)
        x, y = (paper.width - width) / 2, bottom + (top - bottom - height) / 2
        canvas.setFillColor(white)
        canvas.roundRect(x - frame, y - frame, width + 2 * frame, height + 2 * frame, 16, stroke=0, fill=1)
        context.place(0, cover, x=x, y=y, width=width, height=height)


def _draw_page_number(context: PageContext, number: int, brand_name: str | None) -> None:
    canvas, theme, paper = context.canvas, context.theme, context.paper
    label = TextSetter(context.library, size=11, language=context.language).block(str(number), width=paper.text_width)
    center_y = paper.footer / 2
    canvas.setFillColor(theme.badge)
    canvas.circle(paper.width / 2, center_y, 13, stroke=0, fill=1)
    draw_block(canvas, label, x=paper.margin, top=center_y + label.size * 0.82, width=paper.text_width, color=theme.on_badge,
               align="center")
    if brand_name:
        name = TextSetter(context.library, size=8, language=None).block(brand_name, width=paper.text_width / 3)
        draw_block(canvas, name, x=paper.margin, top=center_y + name.size * 0.82, width=paper.text_width / 3, color=theme.muted)


def draw_story_page(context: PageContext, page: BookPage, original_text: str | None, picture: BookImage | None,
                    brand_name: str | None = None) -> None:
    """Picture on top, the page's text below (the original text under it in a bilingual book), number at the foot."""
    canvas, theme, library, paper = context.canvas, context.theme, context.library, context.paper
    top, bottom = paper.height - paper.margin * 0.8, paper.footer
    available = top - bottom
    gap = 0.28 * inch
    original = None
    if original_text:
        original = fit_block(library, original_text, width=paper.text_width, height=available * 0.18, max_size=12, min_size=7,
                             language=None)
    reserved = original.height + 8 if original is not None else 0
    if picture is None:
        text = fit_block(library, page.text, width=paper.text_width, height=available - reserved, max_size=24, min_size=7,
                         language=context.language)
    else:
        # The picture keeps most of the page; a long text may take up to two thirds before its type gets small.
        text = fit_block(library, page.text, width=paper.text_width, height=available * 0.42 - reserved, max_size=19, min_size=13,
                         language=context.language)
        if text.height > available * 0.42 - reserved:
            text = fit_block(library, page.text, width=paper.text_width, height=available * 0.66 - reserved, max_size=13, min_size=7,
                             language=context.language)
    words_height = text.height + reserved
    picture_size = (0.0, 0.0)
    if picture is not None:
        picture_size = picture.fit(paper.text_width, available - words_height - gap)
    group = picture_size[1] + (gap if picture is not None else 0) + words_height
    y = top - (available - group) / 2
    if picture is not None:
        y -= picture_size[1]
        context.place(page.number, picture, x=(paper.width - picture_size[0]) / 2, y=y, width=picture_size[0], height=picture_size[1])
        y -= gap
    text_width = max(picture_size[0], min(paper.text_width, 5.5 * inch))
    text_x = (paper.width - text_width) / 2
    if text.width > text_width:
        text_x, text_width = paper.margin, paper.text_width
    draw_block(canvas, text, x=text_x, top=y, width=text_width, color=theme.ink)
    if original is not None:
        draw_block(canvas, original, x=text_x, top=y - text.height - 8, width=text_width, color=theme.muted)
    _draw_page_number(context, page.number, brand_name)


def draw_last_page(context: PageContext, content: BookContent, logo: BookImage | None) -> None:
    """"The End", the QR code of the download link with the link as clickable text, and the brand's call to action."""
    canvas, theme, library, paper = context.canvas, context.theme, context.library, context.paper
    top = paper.height - paper.margin * 0.8
    heading_setter = TextSetter(library, size=30, language=context.language, bold=True)
    heading = heading_setter.block(the_end(context.language), width=paper.text_width)
    draw_block(canvas, heading, x=paper.margin, top=top, width=paper.text_width, color=theme.accent, align="center")
    top -= heading.height + 14

    draw_qr(canvas, content.download_url, x=(paper.width - QR_SIZE) / 2, y=top - QR_SIZE, size=QR_SIZE)
    top -= QR_SIZE + 8
    caption = TextSetter(library, size=13, language=context.language).block(scan_to_read(context.language), width=paper.text_width)
    draw_block(canvas, caption, x=paper.margin, top=top, width=paper.text_width, color=theme.ink, align="center")
    top -= caption.height
    link = fit_block(library, content.download_url, width=paper.text_width, height=0.5 * inch, max_size=10, min_size=7, language=None)
    draw_block(canvas, link, x=paper.margin, top=top, width=paper.text_width, color=theme.accent, align="center")
    left = (paper.width - link.width) / 2
    canvas.linkURL(content.download_url, (left, top - link.height, left + link.width, top), relative=0, thickness=0)
    top -= link.height + 12

    made = f"Made with {CREATOR}" + (f". {content.pictures_note}" if content.pictures_note else "")
    footer = TextSetter(library, size=8, language=None).block(made, width=paper.text_width)
    draw_block(canvas, footer, x=paper.margin, top=paper.foot + footer.height, width=paper.text_width, color=theme.muted, align="center")
    if content.brand is not None:
        _draw_brand_block(context, content.brand, logo, top=top, bottom=paper.foot + footer.height + 8)


def _draw_brand_block(context: PageContext, brand: BookBrand, logo: BookImage | None, *, top: float, bottom: float) -> None:
    """The brand's message, call-to-action button and logo, centred in the space left between `top` and `bottom`."""
    canvas, theme, paper = context.canvas, context.theme, context.paper
    gap = 10
    button_height = 0.5 * inch if brand.cta_url else 0.0
    logo_size = logo.fit(1.8 * inch, 0.55 * inch) if logo is not None else (0.0, 0.0)
    fixed = button_height + logo_size[1] + gap * (bool(button_height) + bool(logo_size[1]))
    message = None
    if brand.message:
        message = fit_block(context.library, brand.message, width=paper.text_width, height=max(top - bottom - fixed, 12), max_size=13,
                            min_size=7, language=None)
    total = fixed + (message.height if message is not None else 0)
    y = top - max(0.0, (top - bottom - total) / 2)
    if message is not None:
        draw_block(canvas, message, x=paper.margin, top=y, width=paper.text_width, color=theme.ink, align="center")
        y -= message.height + gap
    if brand.cta_url:
        _draw_button(context, brand.cta_text or brand.name, brand.cta_url, bottom=y - button_height)
        y -= button_height + gap
    if logo is not None:
        width, height = logo_size
        draw_picture(canvas, logo, x=(paper.width - width) / 2, y=y - height, width=width, height=height, radius=0)


def _draw_button(context: PageContext, label: str, url: str, *, bottom: float) -> None:
    canvas, theme, paper = context.canvas, context.theme, context.paper
    text = fit_block(context.library, label, width=paper.text_width - 0.6 * inch, height=0.3 * inch, max_size=14, min_size=7,
                     language=None, bold=True)
    width, height = text.width + 0.6 * inch, 0.5 * inch
    x = (paper.width - width) / 2
    canvas.setFillColor(theme.badge)
    canvas.roundRect(x, bottom, width, height, height / 2, stroke=0, fill=1)
    draw_block(canvas, text, x=x, top=bottom + (height + text.height) / 2, width=width, color=theme.on_badge, align="center")
    canvas.linkURL(url, (x, bottom, x + width, bottom + height), relative=0, thickness=0)
