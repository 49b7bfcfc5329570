"""The sizes a book is printed at, and each page's boxes: trim, bleed, crop-mark slug.

A print shop trims the printed sheet to the TrimBox; the picture and the cover colour run 3 mm (0.125 in)
past it on the outer edges (the BleedBox), so no white sliver is left where the blade wanders. The spine edge gets
no bleed (the page is bound there, as Amazon KDP and Lulu ask for interiors). Recto pages (1, 3, 5, …) bind on
the left in a left-to-right book and on the right in a right-to-left one (Arabic, Hebrew). With crop marks, a
slug of white paper around the bleed carries them; the MediaBox grows by it. Text keeps `SAFE_MARGIN` inside the
trim. The `screen` size is the square on-screen layout: no bleed, no boxes but the page.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from reportlab.lib.units import inch, mm

from webapp.book.images import PRINT_DPI

BLEED = 0.125 * inch  # 3.175 mm: the common 1/8 in (3 mm in metric shops)
SAFE_MARGIN = 0.375 * inch  # text stays this far inside the trim (KDP's outside margin for books with bleed)
SLUG = 0.375 * inch  # white paper around the bleed that carries the crop marks
CROP_MARK_LENGTH = 0.25 * inch


class PrintSize(str, Enum):
    screen = "screen"
    square_8_5 = "square-8.5"
    eight_by_ten = "8x10"
    a4 = "a4"
    letter = "letter"


@dataclass(frozen=True)
class Paper:
    """A trim size in points and how the page is laid out on it."""

    size: PrintSize
    label: str
    width: float
    height: float
    bleed: float
    margin: float = 0.75 * inch  # text inset from the trim's sides (more than `SAFE_MARGIN`)
    footer: float = 0.85 * inch  # the strip at the foot of a story page that holds its number
    foot: float = 0.3 * inch  # where the smallest lines at the foot of a page (author, "Made with") sit

    @property
    def for_print(self) -> bool:
        return self.size is not PrintSize.screen

    @property
    def text_width(self) -> float:
        return self.width - 2 * self.margin

    @property
    def safe_margin(self) -> float:
        return SAFE_MARGIN if self.for_print else 0.0


def _print(size: PrintSize, label: str, width: float, height: float) -> Paper:
    # The foot lines and the page number move up, clear of the safe margin.
    return Paper(size, label, width, height, BLEED, footer=1.2 * inch, foot=SAFE_MARGIN + 0.08 * inch)


PAPERS: dict[PrintSize, Paper] = {
    PrintSize.screen: Paper(PrintSize.screen, "8.5 × 8.5 in screen layout (no bleed)", 8.5 * inch, 8.5 * inch, 0.0),
    PrintSize.square_8_5: _print(PrintSize.square_8_5, "8.5 × 8.5 in (216 × 216 mm)", 8.5 * inch, 8.5 * inch),
    PrintSize.eight_by_ten: _print(PrintSize.eight_by_ten, "8 × 10 in (203 × 254 mm)", 8 * inch, 10 * inch),
    PrintSize.a4: _print(PrintSize.a4, "A4 (210 × 297 mm)", 210 * mm, 297 * mm),
    PrintSize.letter: _print(PrintSize.letter, "US Letter (8.5 × 11 in)", 8.5 * inch, 11 * inch),
}

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class PageBoxes:
    """One page's MediaBox size and its BleedBox and TrimBox, in points from the MediaBox's lower-left corner."""

    media: tuple[float, float]
    bleed: Box
    trim: Box

    @property
    def origin(self) -> tuple[float, float]:
        """Where the trim's lower-left corner is: the page is drawn in trim coordinates from there."""
        return self.trim[0], self.trim[1]


def page_boxes(paper: Paper, index: int, *, right_to_left: bool, crop_marks: bool) -> PageBoxes:
    """The boxes of the page at 0-based `index`: bleed at the top, the foot and the outer edge, none at the spine."""
    slug = SLUG if crop_marks and paper.for_print else 0.0
    bleed = paper.bleed
    recto = index % 2 == 0
    spine_on_left = recto != right_to_left
    left_bleed, right_bleed = (0.0, bleed) if spine_on_left else (bleed, 0.0)
    width = slug + left_bleed + paper.width + right_bleed + slug
    height = 2 * (slug + bleed) + paper.height
    trim = (slug + left_bleed, slug + bleed, slug + left_bleed + paper.width, slug + bleed + paper.height)
    bleed_box = (trim[0] - left_bleed, trim[1] - bleed, trim[2] + right_bleed, trim[3] + bleed)
    return PageBoxes(media=(width, height), bleed=bleed_box, trim=trim)


def paper_for(size: PrintSize | str) -> Paper:
    return PAPERS[PrintSize(size)]


def print_picture_width(paper: Paper) -> int:
    """The pixels a picture needs across to print at 300 dpi at the widest a page can print it (the text width)."""
    return math.ceil(paper.text_width / 72 * PRINT_DPI)
