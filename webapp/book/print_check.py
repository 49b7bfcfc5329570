"""What a print shop will ask about a book's PDF, answered from the PDF as rendered: the page size, the bleed, every
picture's effective resolution, whether every font is embedded, and the colour space said plainly.

Fabula's PDFs are RGB: most print-on-demand shops convert RGB themselves, and Fabula makes no CMYK promise (colours
on paper are duller than on a screen; bright greens and blues most of all).
"""

from __future__ import annotations

import re

from pydantic import BaseModel, Field
from reportlab.lib.units import inch, mm

from webapp.book.images import PRINT_DPI
from webapp.book.pages import PicturePlacement
from webapp.book.print_sizes import Paper

COLOUR_NOTE = (
    "RGB colour (as painted). Most print shops convert RGB to their press's CMYK themselves; colours on paper come out "
    "a little duller than on a screen. No CMYK conversion is made or promised."
)
_BASE_FONT = re.compile(rb"/BaseFont\s*/([^\s/>\]]+)")
_FONT_FILE = re.compile(rb"/FontFile[23]?\s")
_UNEMBEDDED_TYPE1 = re.compile(rb"/Subtype\s*/Type1\b")


class PictureCheck(BaseModel):
    page: int = Field(description="The story page (0: the cover).")
    pixels: str = Field(description="The embedded picture's source size, WIDTHxHEIGHT.")
    printed_inches: str = Field(description="Its size on paper.")
    dpi: int = Field(description="Effective resolution at that size (pixels per inch on the scarcer axis).")
    ok: bool = Field(description=f"At least {PRINT_DPI} dpi.")


class PrintCheck(BaseModel):
    """The book's print check, as the story view, the studio and `fabula story` show it."""

    print_size: str
    paper: str
    page_size: str = Field(description="The trim size and the size of the PDF's pages with their bleed.")
    bleed: str
    binding: str = Field(description="The edge the book is bound at: left, or right for Arabic, Hebrew and other right-to-left books.")
    crop_marks: bool
    pictures: list[PictureCheck]
    lowest_dpi: int | None = None
    fonts_embedded: bool
    fonts: int = Field(description="How many fonts the PDF uses (all embedded as subsets when `fonts_embedded`).")
    colour: str = COLOUR_NOTE
    ready: bool = Field(description=f"Every picture reaches {PRINT_DPI} dpi and every font is embedded.")
    problems: list[str] = Field(default_factory=list, description="What keeps the book from `ready`, in plain words.")

    def lines(self) -> list[str]:
        """The check in a few plain lines, for a terminal or the studio."""
        pictures = f"{len(self.pictures)} pictures, lowest {self.lowest_dpi} dpi" if self.pictures else "no pictures"
        return [
            f"Print size: {self.paper}; pages {self.page_size}; bound on the {self.binding}.",
            f"Bleed: {self.bleed}. Crop marks: {'on' if self.crop_marks else 'off'}.",
            f"Pictures: {pictures} (a print shop asks for {PRINT_DPI}).",
            f"Fonts: {self.fonts} fonts, {'all embedded' if self.fonts_embedded else 'NOT all embedded'}.",
            f"Colour: {self.colour}",
            "Ready for a print shop." if self.ready else "Not ready: " + " ".join(self.problems),
        ]


def check_print(pdf: bytes, placements: list[PicturePlacement], paper: Paper, *, right_to_left: bool, crop_marks: bool) -> PrintCheck:
    pictures = [
        PictureCheck(
            page=placement.page, pixels=f"{placement.pixels[0]}x{placement.pixels[1]}",
            printed_inches=f"{placement.width / inch:.2f} × {placement.height / inch:.2f} in", dpi=int(placement.dpi),
            ok=int(placement.dpi) >= PRINT_DPI,
        )
        for placement in placements
    ]
    fonts = len(set(_BASE_FONT.findall(pdf)))
    embedded = len(_FONT_FILE.findall(pdf)) > 0 and not _UNEMBEDDED_TYPE1.search(pdf)
    problems = [
        f"The {'cover' if picture.page == 0 else f'page {picture.page}'} picture is {picture.dpi} dpi at {picture.printed_inches}; "
        f"it will print soft below {PRINT_DPI}."
        for picture in pictures if not picture.ok
    ]
    if not embedded:
        problems.append("A font is not embedded; the print shop may substitute it.")
    bleed_mm = paper.bleed / mm
    return PrintCheck(
        print_size=paper.size.value,
        paper=paper.label,
        page_size=(
            f"{paper.width / inch:.3g} × {paper.height / inch:.3g} in trimmed; "
            f"{(paper.width + paper.bleed) / inch:.4g} × {(paper.height + 2 * paper.bleed) / inch:.4g} in with bleed"
        ),
        bleed=f"{bleed_mm:.1f} mm ({paper.bleed / inch:.3g} in) at the top, the foot and the outer edge; none at the spine",
        binding="right" if right_to_left else "left",
        crop_marks=crop_marks,
        pictures=pictures,
        lowest_dpi=min((picture.dpi for picture in pictures), default=None),
        fonts_embedded=embedded,
        fonts=fonts,
        ready=not problems,
        problems=problems,
    )
