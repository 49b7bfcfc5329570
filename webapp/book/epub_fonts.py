"""The fonts an EPUB carries: for each script in the book, the face the PDF would use, cut down to the book's glyphs.

Faces are chosen by the same `FontLibrary` as the PDF, so both show the same letters. Each is subset with
fontTools to the characters the book uses (its OpenType layout features and the glyphs they reach are kept, so
Arabic joins and Devanagari conjuncts still shape): a Japanese book carries a few hundred kilobytes, not the
whole 6 MB face. A face from a collection (`.ttc`) is saved as a single font. Subsets are TrueType (`font/ttf`)
or CFF OpenType (`font/otf`), both EPUB core media types, and are not obfuscated.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

from fontTools import subset
from fontTools.ttLib import TTFont

from webapp.book.fonts import FontFace, FontLibrary
from webapp.book.render_lock import RENDER_LOCK

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddedFont:
    family: str  # the CSS font-family name
    href: str  # where the file lies in the EPUB, relative to the package document
    media_type: str
    data: bytes


def _subset(face: FontFace, codepoints: set[int]) -> tuple[bytes, str, str]:
    """The face cut down to `codepoints`: its bytes, media type and file suffix."""
    options = subset.Options()
    options.layout_features = ["*"]
    options.name_IDs = ["*"]  # keep the copyright and licence records
    options.name_languages = ["*"]
    options.notdef_outline = True
    options.recalc_bounds = True
    options.drop_tables += ["BDF", "FFTM", "EBDT", "EBLC", "EBSC"]  # bitmap strikes and build stamps: not drawn
    # The face keeps its own date stamp, so the same book gives the same bytes.
    font = TTFont(str(face.path), fontNumber=face.subfont_index, lazy=False, recalcTimestamp=False)
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=codepoints)
    subsetter.subset(font)
    font.flavor = None
    buffer = io.BytesIO()
    font.save(buffer)
    if "CFF " in font or "CFF2" in font:
        return buffer.getvalue(), "font/otf", "otf"
    return buffer.getvalue(), "font/ttf", "ttf"


def embedded_fonts(texts: Iterable[str], language: str, library: FontLibrary) -> list[EmbeddedFont]:
    """The subset fonts that draw every character of `texts`, the face used most first.

    Characters no installed font has are left to the reading system (the PDF leaves them out; here the reader
    may still have a font for them).
    """
    usage: dict[FontFace, set[int]] = {}
    counts: dict[FontFace, int] = {}
    with RENDER_LOCK:
        assigned = [pair for text in texts for pair in library.assign(text, language=language)]
    for char, face in assigned:
        if face.path is None:
            continue  # reportlab's built-in Helvetica has no file to embed
        usage.setdefault(face, set()).add(ord(char))
        counts[face] = counts.get(face, 0) + 1
    fonts: list[EmbeddedFont] = []
    used_names: set[str] = set()
    for face in sorted(usage, key=lambda item: -counts[item]):
        codepoints = usage[face] | {0x20}
        try:
            data, media_type, suffix = _subset(face, codepoints)
        except Exception as error:  # noqa: BLE001 - fontTools raises many kinds for damaged or unusual fonts
            logger.warning("font %s could not be subset for the EPUB (%s); the reading system's fonts will be used",
                           face.path, error)
            continue
        stem = re.sub(r"[^A-Za-z0-9-]+", "", face.path.stem if face.path else "font") or "font"
        if face.subfont_index:
            stem = f"{stem}-{face.subfont_index}"
        while stem in used_names:
            stem += "x"
        used_names.add(stem)
        fonts.append(EmbeddedFont(f"Fabula {stem}", f"fonts/{stem}.{suffix}", media_type, data))
    return fonts
