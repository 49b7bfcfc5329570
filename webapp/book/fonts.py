"""Fonts for every script: find TrueType files on this machine, register them with reportlab, pick one per character.

reportlab embeds TrueType-outline fonts only (as subsets); `.ttc`/`.otf` files with CFF outlines (Noto CJK)
fail to load and are skipped. Each script has a preferred chain of families (Korean: Nanum Gothic,
Japanese: IPAGothic, Chinese: WenQuanYi Zen Hei, Arabic: Noto Sans Arabic, ...); a character no family
in its chain covers is looked up in every font found, and one no font covers is left out (with a warning
once per script), so a page never shows a missing-glyph box.

Font folders: `FABULA_FONT_DIRS` (colon-separated, searched first), then the system font folders.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import FF_FORCEBOLD, TTFont, TTFontFile

from webapp.book.scripts import Script, script_of

logger = logging.getLogger(__name__)

FONT_DIRS_ENV = "FABULA_FONT_DIRS"
SYSTEM_FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.local/share/fonts", "~/.fonts")
FONT_SUFFIXES = (".ttf", ".ttc", ".otf")

# Each family: (regular file, bold file or None) in order of preference; the first file found is used.
FAMILIES: dict[str, tuple[tuple[str, str | None], ...]] = {
    "latin": (
        ("NotoSans-Regular.ttf", "NotoSans-Bold.ttf"),
        ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf"),
        ("LiberationSans-Regular.ttf", "LiberationSans-Bold.ttf"),
    ),
    "hangul": (
        ("NanumGothic.ttf", "NanumGothicBold.ttf"),
        ("NanumBarunGothic.ttf", "NanumBarunGothicBold.ttf"),
        ("wqy-zenhei.ttc", None),
        ("DroidSansFallbackFull.ttf", None),
    ),
    "japanese": (
        ("ipag.ttf", None),
        ("ipagp.ttf", None),
        ("DroidSansFallbackFull.ttf", None),
        ("wqy-zenhei.ttc", None),
    ),
    "chinese": (
        ("wqy-zenhei.ttc", None),
        ("wqy-microhei.ttc", None),
        ("uming.ttc", None),
        ("DroidSansFallbackFull.ttf", None),
        ("ipag.ttf", None),
    ),
    "arabic": (
        ("NotoSansArabic-Regular.ttf", "NotoSansArabic-Bold.ttf"),
        ("NotoNaskhArabic-Regular.ttf", "NotoNaskhArabic-Bold.ttf"),
    ),
    "hebrew": (
        ("NotoSansHebrew-Regular.ttf", "NotoSansHebrew-Bold.ttf"),
        ("NotoSerifHebrew-Regular.ttf", "NotoSerifHebrew-Bold.ttf"),
    ),
    "devanagari": (("NotoSansDevanagari-Regular.ttf", "NotoSansDevanagari-Bold.ttf"),),
    "thai": (
        ("NotoSansThai-Regular.ttf", "NotoSansThai-Bold.ttf"),
        ("NotoSansThaiLooped-Regular.ttf", "NotoSansThaiLooped-Bold.ttf"),
        ("NotoLoopedThai-Regular.ttf", "NotoLoopedThai-Bold.ttf"),
    ),
    "symbols": (
        ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf"),
        ("NotoSansSymbols2-Regular.ttf", None),
        ("NotoSansSymbols-Regular.ttf", "NotoSansSymbols-Bold.ttf"),
        ("NotoSansMath-Regular.ttf", None),
        ("NotoEmoji-Regular.ttf", None),
    ),
}

_SCRIPT_FAMILIES: dict[Script, tuple[str, ...]] = {
    Script.latin: ("latin", "symbols"),
    Script.greek: ("latin", "symbols"),
    Script.cyrillic: ("latin", "symbols"),
    Script.common: ("latin", "symbols"),
    Script.arabic: ("arabic",),
    Script.hebrew: ("hebrew",),
    Script.devanagari: ("devanagari",),
    Script.thai: ("thai",),
    Script.hangul: ("hangul", "chinese"),
    Script.kana: ("japanese", "chinese"),
    Script.emoji: ("symbols", "latin"),
}
_HAN_FAMILIES = {"ja": ("japanese", "chinese", "hangul"), "ko": ("hangul", "chinese", "japanese")}
_WEIGHT_WORDS = re.compile(r"bold|black|heavy|light|thin|medium|semi|extra|italic|oblique|condensed|mono|display", re.I)


@dataclass(frozen=True, eq=False)
class FontFace:
    """One font registered with reportlab under `name`, with the code points it has glyphs for."""

    name: str
    path: Path | None  # None: reportlab's built-in Helvetica, the last resort on a machine without fonts
    subfont_index: int
    postscript_name: str
    codepoints: frozenset[int]
    bold: bool = False  # a bold design (weight class 600 or more)

    def covers(self, char: str) -> bool:
        return ord(char) in self.codepoints


def font_directories() -> list[Path]:
    """`FABULA_FONT_DIRS` first (so a deployment can bring its own fonts), then the system folders."""
    configured = [Path(part).expanduser() for part in os.environ.get(FONT_DIRS_ENV, "").split(":") if part.strip()]
    return configured + [Path(folder).expanduser() for folder in SYSTEM_FONT_DIRS]


def families_for(script: Script, language: str | None) -> tuple[str, ...]:
    """The font families to try, in order, for a character of `script` in a book written in `language`."""
    if script is Script.han:
        primary = (language or "").split("-")[0].lower()
        return _HAN_FAMILIES.get(primary, ("chinese", "japanese", "hangul"))
    return _SCRIPT_FAMILIES.get(script, ())


def _helvetica_face() -> FontFace:
    """reportlab's built-in Helvetica draws the WinAnsi (cp1252) characters."""
    winansi = bytes(range(0x20, 0x100)).decode("cp1252", errors="ignore")
    return FontFace("Helvetica", None, 0, "Helvetica", frozenset(map(ord, winansi)))


class FontLibrary:
    """The fonts one renderer uses, loaded on first need and shared by every book it renders (thread-safe)."""

    def __init__(self, directories: Sequence[Path] | None = None) -> None:
        self._directories = list(directories) if directories is not None else font_directories()
        self._lock = threading.RLock()
        self._files: dict[str, Path] | None = None
        self._faces: dict[tuple[Path, int], FontFace | None] = {}
        self._families: dict[tuple[str, bool], list[FontFace]] = {}
        self._coverage: dict[Path, frozenset[int]] = {}
        self._found_anywhere: dict[int, Path | None] = {}
        self._scan_paths: list[Path] | None = None
        self._warned: set[str] = set()

    # ---- finding and loading files ----------------------------------------------------------------------
    def _index(self) -> dict[str, Path]:
        if self._files is None:
            files: dict[str, Path] = {}
            for directory in self._directories:
                if not directory.is_dir():
                    continue
                for path in sorted(directory.rglob("*")):
                    if path.suffix.lower() in FONT_SUFFIXES and path.is_file():
                        files.setdefault(path.name.lower(), path)
            self._files = files
        return self._files

    def _load(self, path: Path, subfont_index: int = 0) -> FontFace | None:
        key = (path, subfont_index)
        if key not in self._faces:
            digest = hashlib.sha1(f"{path}#{subfont_index}".encode()).hexdigest()[:8]
            name = f"Fabula-{re.sub(r'[^A-Za-z0-9]+', '', path.stem)}-{digest}"
            try:
                font: TTFont
                registered = pdfmetrics.getFont(name) if name in pdfmetrics.getRegisteredFontNames() else None
                if isinstance(registered, TTFont):  # every "Fabula-…" font is a TTFont, registered here on first use
                    font = registered
                else:
                    font = TTFont(name, str(path), subfontIndex=subfont_index)
                    pdfmetrics.registerFont(font)
            except Exception as error:  # noqa: BLE001 - reportlab raises several kinds for CFF/broken fonts
                logger.warning("font %s cannot be embedded (%s); skipping it", path, error)
                self._faces[key] = None
                return None
            # The name the PDF's /BaseFont shows after the subset prefix (a collection adds "-<index>").
            postscript_name = (font.face.name + font.face.subfontNameX).decode("latin-1")
            # Private-use entries are left out: reportlab's HarfBuzz path adds some for ligature glyphs.
            charmap = font.face.charToGlyph
            codepoints = frozenset(code for code, glyph in charmap.items() if glyph and not 0xE000 <= code <= 0xF8FF)
            bold = bool(font.face.flags & FF_FORCEBOLD)
            self._faces[key] = FontFace(name, path, subfont_index, postscript_name, codepoints, bold)
        return self._faces[key]

    def _family_faces(self, family: str, bold: bool) -> list[FontFace]:
        if (family, bold) in self._families:
            return self._families[family, bold]
        faces = []
        for regular, bold_name in FAMILIES[family]:
            path = self._index().get(((bold and bold_name) or regular).lower()) or self._index().get(regular.lower())
            face = self._load(path) if path else None
            if face is not None:
                faces.append(face)
        if not faces and f"family:{family}" not in self._warned:
            self._warned.add(f"family:{family}")
            wanted = ", ".join(regular for regular, _ in FAMILIES[family])
            logger.warning("no %s font found (looked for %s in %s); falling back to any font that has the characters",
                           family, wanted, ":".join(map(str, self._directories)))
        self._families[family, bold] = faces
        return faces

    def _file_coverage(self, path: Path) -> frozenset[int]:
        if path not in self._coverage:
            try:
                charmap = TTFontFile(str(path)).charToGlyph
                self._coverage[path] = frozenset(code for code, glyph in charmap.items() if glyph)
            except Exception:  # noqa: BLE001 - CFF outlines, damaged files: not usable by reportlab
                self._coverage[path] = frozenset()
        return self._coverage[path]

    def _scan_order(self) -> list[Path]:
        """Every font file, Noto Sans regular faces first, then other regular faces, then the rest."""
        if self._scan_paths is None:

            def rank(path: Path) -> tuple[int, str]:
                weighted = bool(_WEIGHT_WORDS.search(path.stem.replace("Regular", "")))
                return (0 if path.stem.startswith("NotoSans") and not weighted else 1 if not weighted else 2, path.stem)

            self._scan_paths = sorted(self._index().values(), key=rank)
        return self._scan_paths

    def _anywhere(self, char: str, bold: bool) -> FontFace | None:
        code = ord(char)
        if code not in self._found_anywhere:
            self._found_anywhere[code] = next((path for path in self._scan_order() if code in self._file_coverage(path)), None)
        path = self._found_anywhere[code]
        if path is None:
            return None
        if bold:
            bold_path = self._index().get(path.name.replace("-Regular", "-Bold").lower())
            face = self._load(bold_path) if bold_path else None
            if face is not None and face.covers(char):
                return face
        return self._load(path)

    # ---- choosing faces ---------------------------------------------------------------------------------
    def default_face(self, *, bold: bool = False) -> FontFace:
        """The Latin body font (reportlab's built-in Helvetica only when no TrueType Latin font is installed)."""
        with self._lock:
            faces = self._family_faces("latin", bold)
            return faces[0] if faces else _helvetica_face()

    def face_for(self, char: str, script: Script, *, language: str | None = None, bold: bool = False,
                 then: Script | None = None) -> FontFace | None:
        """The font to draw `char` with, or None when no installed font has it (a warning is logged once per script).

        The families of `script` are tried first, then those of `then`, then every font found.
        """
        with self._lock:
            families = families_for(script, language) + (families_for(then, language) if then is not None else ())
            for family in dict.fromkeys(families):
                for face in self._family_faces(family, bold):
                    if face.covers(char):
                        return face
            if unicodedata.category(char) in ("Cf", "Co", "Cn", "Zl", "Zp"):
                return None  # invisible or unassigned: nothing to draw, nothing to warn about
            # Emoji beyond the symbol fonts need a colour font reportlab cannot embed: no point searching every file.
            found = self._anywhere(char, bold) if script is not Script.emoji else None
            if found is not None:
                return found
            helvetica = _helvetica_face()
            if not self._index() and helvetica.covers(char):
                return helvetica
            if f"missing:{script.value}" not in self._warned:
                self._warned.add(f"missing:{script.value}")
                # Suggest the Debian package only where it is missing: with it installed, the character needs another font.
                noto = any(name.startswith("noto") for name in self._index())
                remedy = "Add a font that has it to a folder in %s." if noto else "Install fonts-noto-core, or add a folder to %s."
                logger.warning("no installed font has U+%04X (%s, %s script); such characters are left out of the PDF. " + remedy,
                               ord(char), unicodedata.name(char, "unnamed"), script.value, FONT_DIRS_ENV)
            return None

    def assign(self, text: str, *, language: str | None = None, bold: bool = False) -> list[tuple[str, FontFace]]:
        """Pair each drawable character with its font; characters no font has are dropped.

        Spaces, punctuation and marks keep the font of the character before them when it has the glyph, so a
        run such as "민지, hello" splits into as few runs as the scripts need.
        """
        scripts = [script_of(char) for char in text]
        strong = [script for script in scripts if script not in (Script.common, Script.inherited)]
        context = strong[0] if strong else Script.latin
        pairs: list[tuple[str, FontFace]] = []
        for char, script in zip(text, scripts, strict=True):
            previous = pairs[-1][1] if pairs else None
            if script in (Script.common, Script.inherited):
                if previous is not None and previous.covers(char):
                    pairs.append((char, previous))
                    continue
                face = self.face_for(char, context, language=language, bold=bold, then=Script.common)
            else:
                context = script
                face = self.face_for(char, script, language=language, bold=bold)
            if face is not None:
                pairs.append((char, face))
        return pairs

    def loaded_faces(self) -> list[FontFace]:
        with self._lock:
            return [face for face in self._faces.values() if face is not None]


@lru_cache(maxsize=1)
def default_font_library() -> FontLibrary:
    """The process-wide library over `font_directories()` (read once; restart to pick up new fonts)."""
    return FontLibrary()
