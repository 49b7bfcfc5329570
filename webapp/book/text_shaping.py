"""Right-to-left and complex-script text: the order and the glyphs reportlab should draw.

reportlab 5.1 draws the characters of a string left to right, one glyph each. So:

- Arabic and Hebrew: a paragraph is wrapped in logical order first; then each line goes through
  `arabic_reshaper` (letters take their joined initial/medial/final presentation forms; harakat are kept)
  and python-bidi's `get_display` (visual order, brackets mirrored), and is drawn right-aligned. Vowel marks
  (harakat, niqqud) sit where the font's default mark offsets put them: right for Arabic in Noto Sans Arabic,
  close for Hebrew. HarfBuzz would place niqqud exactly, but poppler then extracts the marks apart from their
  letters, so the text layer wins here.
- Indic scripts, Thai and the like: HarfBuzz (`uharfbuzz`, through reportlab's `shapeStr`) builds conjuncts,
  reorders vowel signs and stacks marks. Ligature glyphs have no Unicode value, so such lines are wrapped in
  `/ActualText` marked content: text extraction and copy-paste then give the logical text.

What `pdftotext` (poppler) gives back: it detects right-to-left lines and returns them in logical (reading)
order, as the presentation forms that reshaping produced; NFKC normalisation folds those back into the
ordinary Arabic letters. Right-to-left lines carry no `/ActualText`, because poppler reverses an ActualText
string on a right-to-left line a second time.
"""

from __future__ import annotations

import logging
import unicodedata

from arabic_reshaper import ArabicReshaper
from bidi import get_display
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import ShapedStr, shapeStr

from webapp.book.scripts import COMPLEX_SCRIPTS, Script, is_right_to_left_char, script_of

logger = logging.getLogger(__name__)

RIGHT_TO_LEFT_LANGUAGES = frozenset({"ar", "he", "iw", "fa", "ur", "yi", "ps", "dv", "ckb", "sd", "ug", "syr"})
_RESHAPER = ArabicReshaper(configuration={"delete_harakat": False, "support_ligatures": True})
_warned_unshaped: set[str] = set()


def primary_language(language: str | None) -> str:
    return (language or "").replace("_", "-").split("-")[0].lower()


def is_right_to_left_language(language: str | None) -> bool:
    return primary_language(language) in RIGHT_TO_LEFT_LANGUAGES


def paragraph_is_right_to_left(text: str, language: str | None) -> bool:
    """A paragraph of a right-to-left book runs right to left; otherwise its first strong character decides (UAX #9 P2)."""
    if is_right_to_left_language(language):
        return True
    for char in text:
        direction = unicodedata.bidirectional(char)
        if direction in ("R", "AL"):
            return True
        if direction == "L":
            return False
    return False


def contains_right_to_left(text: str) -> bool:
    return any(is_right_to_left_char(char) for char in text)


def visual_order(line: str, *, right_to_left: bool) -> str:
    """One wrapped line in the order its characters are drawn, left to right (Arabic letters joined)."""
    if not right_to_left and not contains_right_to_left(line):
        return line
    if any(script_of(char) is Script.arabic for char in line):
        line = _RESHAPER.reshape(line)
    return get_display(line, base_dir="R" if right_to_left else "L")


def needs_shaping(text: str) -> bool:
    return any(script_of(char) in COMPLEX_SCRIPTS for char in text)


def shaped(text: str, font_name: str, size: float) -> tuple[str, float]:
    """The string to draw for a run of `text` (in drawing order) in one font, and its width in points.

    Runs of complex scripts are shaped with HarfBuzz (a `ShapedStr` carrying glyph positions); other runs are
    drawn as they are. Without `uharfbuzz` installed, complex scripts are drawn unshaped (a warning is logged).
    """
    if needs_shaping(text):
        font = pdfmetrics.getFont(font_name)
        if getattr(font, "shapable", False):
            result = shapeStr(text, font_name, size)
            if isinstance(result, ShapedStr):
                glyphs = result.__shapeData__  # type: ignore[attr-defined]  # set by reportlab, missing from types-reportlab
                return result, sum(data.x_advance for data in glyphs) * size / 1000
        elif font_name not in _warned_unshaped:
            _warned_unshaped.add(font_name)
            logger.warning("uharfbuzz is not installed: %s is drawn without shaping (conjuncts and marks may look wrong)",
                           font_name)
    return text, pdfmetrics.stringWidth(text, font_name, size)


def actual_text_begin(text: str) -> str:
    """The PDF operator that opens marked content whose extracted text is `text` (close it with `EMC`)."""
    return f"/Span <</ActualText <FEFF{text.encode('utf-16-be').hex().upper()}>>> BDC"


ACTUAL_TEXT_END = "EMC"
