"""Which writing system a character belongs to, and the cleaning every piece of book text goes through.

The renderer picks a font per run of characters by script, so the classification only needs to be as
fine as the font choice: a block table for letters, Unicode categories for what all scripts share.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from enum import Enum


class Script(str, Enum):
    common = "common"  # spaces, punctuation, digits and symbols every script uses
    inherited = "inherited"  # combining marks: they take the script of the letter they sit on
    latin = "latin"
    greek = "greek"
    cyrillic = "cyrillic"
    armenian = "armenian"
    georgian = "georgian"
    hebrew = "hebrew"
    arabic = "arabic"
    syriac = "syriac"
    thaana = "thaana"
    devanagari = "devanagari"
    bengali = "bengali"
    gurmukhi = "gurmukhi"
    gujarati = "gujarati"
    oriya = "oriya"
    tamil = "tamil"
    telugu = "telugu"
    kannada = "kannada"
    malayalam = "malayalam"
    sinhala = "sinhala"
    thai = "thai"
    lao = "lao"
    tibetan = "tibetan"
    myanmar = "myanmar"
    khmer = "khmer"
    ethiopic = "ethiopic"
    hangul = "hangul"
    kana = "kana"
    han = "han"
    emoji = "emoji"
    other = "other"


# Scripts whose glyphs need OpenType shaping (conjuncts, reordered vowels, stacked marks).
COMPLEX_SCRIPTS = frozenset({
    Script.devanagari, Script.bengali, Script.gurmukhi, Script.gujarati, Script.oriya, Script.tamil, Script.telugu,
    Script.kannada, Script.malayalam, Script.sinhala, Script.thai, Script.lao, Script.tibetan, Script.myanmar, Script.khmer,
})
RIGHT_TO_LEFT_SCRIPTS = frozenset({Script.hebrew, Script.arabic, Script.syriac, Script.thaana})
# Scripts written without spaces between words: a line may break between any two of their characters.
IDEOGRAPHIC_SCRIPTS = frozenset({Script.han, Script.kana})

_BLOCKS: tuple[tuple[int, int, Script], ...] = (
    (0x0000, 0x02FF, Script.latin),
    (0x0370, 0x03FF, Script.greek),
    (0x0400, 0x052F, Script.cyrillic),
    (0x0530, 0x058F, Script.armenian),
    (0x0590, 0x05FF, Script.hebrew),
    (0x0600, 0x06FF, Script.arabic),
    (0x0700, 0x074F, Script.syriac),
    (0x0750, 0x077F, Script.arabic),
    (0x0780, 0x07BF, Script.thaana),
    (0x0860, 0x08FF, Script.arabic),
    (0x0900, 0x097F, Script.devanagari),
    (0x0980, 0x09FF, Script.bengali),
    (0x0A00, 0x0A7F, Script.gurmukhi),
    (0x0A80, 0x0AFF, Script.gujarati),
    (0x0B00, 0x0B7F, Script.oriya),
    (0x0B80, 0x0BFF, Script.tamil),
    (0x0C00, 0x0C7F, Script.telugu),
    (0x0C80, 0x0CFF, Script.kannada),
    (0x0D00, 0x0D7F, Script.malayalam),
    (0x0D80, 0x0DFF, Script.sinhala),
    (0x0E00, 0x0E7F, Script.thai),
    (0x0E80, 0x0EFF, Script.lao),
    (0x0F00, 0x0FFF, Script.tibetan),
    (0x1000, 0x109F, Script.myanmar),
    (0x10A0, 0x10FF, Script.georgian),
    (0x1100, 0x11FF, Script.hangul),
    (0x1200, 0x139F, Script.ethiopic),
    (0x1780, 0x17FF, Script.khmer),
    (0x1C80, 0x1C8F, Script.cyrillic),
    (0x1E00, 0x1EFF, Script.latin),
    (0x1F00, 0x1FFF, Script.greek),
    (0x2300, 0x23FF, Script.emoji),
    (0x2600, 0x27BF, Script.emoji),
    (0x2B00, 0x2BFF, Script.emoji),
    (0x2C60, 0x2C7F, Script.latin),
    (0x2DE0, 0x2DFF, Script.cyrillic),
    (0x2E80, 0x2FDF, Script.han),
    (0x3040, 0x30FF, Script.kana),
    (0x3100, 0x312F, Script.han),
    (0x3130, 0x318F, Script.hangul),
    (0x3190, 0x31EF, Script.han),
    (0x31F0, 0x31FF, Script.kana),
    (0x3200, 0x9FFF, Script.han),
    (0xA640, 0xA69F, Script.cyrillic),
    (0xA720, 0xA7FF, Script.latin),
    (0xA960, 0xA97F, Script.hangul),
    (0xAC00, 0xD7FF, Script.hangul),
    (0xF900, 0xFAFF, Script.han),
    (0xFB00, 0xFB06, Script.latin),
    (0xFB1D, 0xFB4F, Script.hebrew),
    (0xFB50, 0xFDFF, Script.arabic),
    (0xFE30, 0xFE4F, Script.han),
    (0xFE70, 0xFEFE, Script.arabic),
    (0xFF00, 0xFF64, Script.han),
    (0xFF65, 0xFF9F, Script.kana),
    (0xFFA0, 0xFFDC, Script.hangul),
    (0x1F000, 0x1FAFF, Script.emoji),
    (0x20000, 0x3FFFF, Script.han),
)
_BLOCK_STARTS = [start for start, _, _ in _BLOCKS]

# Characters removed before layout: bidi embeddings and overrides (they would let text reorder the page),
# variation selectors and tags (reportlab cannot use them), the byte-order mark, soft hyphens.
_REMOVED = re.compile(
    "[\u00ad\u202a-\u202e\u2066-\u2069\ufeff\ufe00-\ufe0f\ufffc\U000e0000-\U000e007f\U000e0100-\U000e01ef]"
)
_LINE_SEPARATORS = re.compile("\r\n|[\r\u2028\u2029\u0085]")
_SPACES = re.compile("[\t\u000b\u000c\u1680\u2000-\u200a\u205f]")
# Invisible characters that only steer bidi or shaping; layout uses them, drawing leaves them out.
INVISIBLE_FORMAT = frozenset("\u200b\u200c\u200d\u200e\u200f\u061c\u2060")


def script_of(char: str) -> Script:
    """The script a character is written in, `common` for shared punctuation and digits, `inherited` for marks."""
    category = unicodedata.category(char)
    if category[0] == "M":
        return Script.inherited
    code = ord(char)
    index = bisect.bisect_right(_BLOCK_STARTS, code) - 1
    script = Script.other
    if index >= 0 and code <= _BLOCKS[index][1]:
        script = _BLOCKS[index][2]
    if script is Script.emoji:
        return Script.emoji if category == "So" else Script.common
    if category[0] in "ZPSNC" and script in (Script.latin, Script.other, Script.han):
        return Script.common
    return script


def is_right_to_left_char(char: str) -> bool:
    return unicodedata.bidirectional(char) in ("R", "AL")


def clean_text(text: str) -> str:
    """Book text as the renderer may draw it: NFC, `\\n` line breaks, no control, bidi-override or unassigned characters.

    Markup characters (`<`, `&`) are ordinary text here: the renderer never passes text through a markup parser.
    """
    text = unicodedata.normalize("NFC", text)
    text = _LINE_SEPARATORS.sub("\n", text)
    text = _SPACES.sub(" ", text)
    text = _REMOVED.sub("", text)
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if char == "\n" or char in INVISIBLE_FORMAT:
            kept.append(char)
        elif category in ("Cc", "Cs", "Cn", "Co") or (category == "Cf" and char not in INVISIBLE_FORMAT):
            continue
        else:
            kept.append(char)
    return "".join(kept)


def grapheme_clusters(text: str) -> list[str]:
    """Split text into user-perceived characters (a base letter with its marks, a ZWJ-joined sequence).

    Used only to break a word too long for its line, so an approximation of UAX #29 that never separates
    a mark or a virama-joined consonant from its letter is enough.
    """
    clusters: list[str] = []
    for char in text:
        joins_previous = clusters and (
            unicodedata.category(char)[0] == "M"
            or char in "\u200c\u200d"
            or clusters[-1][-1] in "\u200d"
            or unicodedata.name(clusters[-1][-1], "").endswith(("VIRAMA", "SIGN COENG"))
        )
        if joins_previous:
            clusters[-1] += char
        else:
            clusters.append(char)
    return clusters
