"""Books in eight scripts: the text survives a PDF round trip, RTL runs right to left, and no glyph is missing.

Text comes back through poppler's `pdftotext`. For left-to-right scripts the page text must come back as
written (after NFKC and whitespace folding; Chinese and Japanese lines break between characters, so their
comparison ignores whitespace). Shaped scripts (Devanagari, Thai) come back exactly thanks to `/ActualText`.
For Arabic and Hebrew, `pdftotext` rebuilds the reading order itself from the drawn glyphs: the words must
come back in logical order (punctuation next to a direction change may move, so words are compared).
`pdftotext -bbox` shows the glyphs as drawn: those words must sit right to left, joined, right-aligned.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import unicodedata
from pathlib import Path

import pytest
from fontTools.ttLib import TTFont as FontFile
from PIL import Image
from pypdf import PdfReader
from pypdf.generic import ContentStream

from webapp.book.content import BookContent, BookPage
from webapp.book.fonts import FontLibrary, default_font_library, font_directories
from webapp.book.pdf import render_book

pytestmark = pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs poppler-utils (pdftotext, pdftoppm)")

SAMPLES = {
    "ko": ("민지의 작은 고양이", "민지는 Tom과 함께 숲으로 갔어요. 나무 뒤에서 작은 고양이가 나타났어요! 고양이는 배가 고파 보였어요."),
    "ja": ("ハナとふしぎなねこ", "「こんにちは」とハナは言いました。Tomはにっこり笑って、ねこと一緒に森のおくへ歩いていきました。"),
    "zh": ("小猫的冒险", "小明和Tom一起去公园。一只小猫从树后面跑了出来，它看起来很饿，小明就把面包分给了它。"),
    "ar": ("مغامرة القطة الصغيرة", "ذهبت ليلى مع Sam إلى الحديقة، ورأت قطة صغيرة تختبئ خلف الشجرة. "
                                   "كَانَتِ القِطَّةُ جَائِعَةً جِدًّا، فَأَعْطَتْهَا لَيْلَى قِطْعَةً مِنَ الخُبْزِ."),
    "he": ("החתולה הקטנה", "דנה הלכה עם Tom לגן. חתולה קטנה הציצה מאחורי העץ, והיא נראתה רעבה מאוד."),
    "hi": ("छोटी बिल्ली", "माया और Tom बगीचे में गए। पेड़ के पीछे से एक छोटी बिल्ली निकली। माया ने अपना खाना उसके साथ बाँटा, क्योंकि वह सच्ची मित्र थी।"),
    "th": ("แมวน้อยผจญภัย", "มะลิและ Tom ไปที่สวนสาธารณะ แมวน้อยตัวหนึ่งโผล่ออกมาจากหลังต้นไม้ มันดูหิวมาก"),
    "ru": ("Маленькая кошка", "Маша и Tom пошли в парк. Из-за дерева выглянула маленькая кошка. Она выглядела очень голодной."),
}
EXPECTED_FONTS = {
    "ko": "NanumGothic", "ja": "IPAGothic", "zh": "WenQuanYiZenHei", "ar": "NotoSansArabic", "he": "NotoSansHebrew",
    "hi": "NotoSansDevanagari", "th": "NotoSansThai", "ru": "NotoSans-Regular",
}
RIGHT_TO_LEFT = ("ar", "he")


def _picture() -> bytes:
    image = Image.linear_gradient("L").resize((64, 64)).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _book(language: str, text: str, title: str = "Title", *, fonts: FontLibrary | None = None) -> bytes:
    content = BookContent(
        title=title, language=language, subject="a test", cover_png=_picture(),
        pages=[BookPage(number=1, text=text, image_png=_picture())],
        download_url="http://127.0.0.1:7860/books/abc.pdf",
    )
    return render_book(content, fonts=fonts)


@pytest.fixture(scope="module")
def books(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("scripts")
    paths = {}
    for language, (title, text) in SAMPLES.items():
        paths[language] = folder / f"{language}.pdf"
        paths[language].write_bytes(_book(language, text, title))
    return paths


def pdftotext(path: Path, page: int, *extra: str) -> str:
    return subprocess.run(["pdftotext", "-enc", "UTF-8", "-f", str(page), "-l", str(page), *extra, str(path), "-"],
                          check=True, capture_output=True, text=True).stdout


def normalise(text: str) -> str:
    """NFKC (folds Arabic presentation forms into letters), no format characters, single spaces."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(char for char in text if unicodedata.category(char) != "Cf")
    return re.sub(r"\s+", " ", text).strip()


def words(text: str) -> list[str]:
    """Runs of letters with their marks, split where Latin meets another script; digits and punctuation left out."""
    found, current = [], ""
    for char in normalise(text):
        kind = unicodedata.category(char)[0]
        if kind == "L" and current and char.isascii() != current[-1].isascii():
            found.append(current)
            current = ""
        if kind in "LM":
            current += char
        elif current:
            found.append(current)
            current = ""
    return found + [current] if current else found


# ---- helpers that read what a PDF page really draws --------------------------------------------------------
def _to_unicode(font) -> dict[int, str]:
    cmap = font["/ToUnicode"].get_object().get_data().decode("latin-1")
    mapping = {}
    for block in re.findall(r"beginbfchar(.*?)endbfchar", cmap, re.S):
        for code, value in re.findall(r"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
            # reportlab 5.1 writes code points beyond U+FFFF as plain hex, not UTF-16
            mapping[int(code, 16)] = chr(int(value, 16)) if len(value) % 4 else bytes.fromhex(value).decode("utf-16-be")
    return mapping


def drawn_glyphs(reader: PdfReader, page_index: int) -> list[tuple[str, int]]:
    """(font resource name, code) for every glyph the page's content stream shows."""
    page = reader.pages[page_index]
    shown: list[tuple[str, int]] = []
    font = None
    for operands, operator in ContentStream(page.get_contents(), reader).operations:
        if operator == b"Tf":
            font = str(operands[0])
        elif operator in (b"Tj", b"TJ"):
            items = operands[0] if operator == b"TJ" else operands
            for item in items:
                if isinstance(item, (bytes, str)):
                    data = item.get_original_bytes() if hasattr(item, "get_original_bytes") else bytes(item)
                    shown.extend((font, code) for code in data)
    return shown


def missing_glyphs(reader: PdfReader, page_index: int) -> list[str]:
    """Glyphs drawn from a font that has none for them: the .notdef box, or text mapped to U+0000."""
    fonts = reader.pages[page_index]["/Resources"]["/Font"]
    problems = []
    for resource, code in sorted(set(drawn_glyphs(reader, page_index))):
        font = fonts[resource].get_object()
        if "/FontDescriptor" not in font or "/FontFile2" not in font["/FontDescriptor"]:
            problems.append(f"{resource}: font {font['/BaseFont']} is not embedded")
            continue
        embedded = FontFile(io.BytesIO(font["/FontDescriptor"]["/FontFile2"].get_object().get_data()))
        glyph_name = embedded["cmap"].tables[0].cmap.get(code)
        glyphs = embedded["glyf"]
        notdef = glyphs[".notdef"].getCoordinates(glyphs)[0]
        if glyph_name in (None, ".notdef") or _to_unicode(font).get(code) == "\x00":
            problems.append(f"{resource} code {code}: no glyph")
        elif len(notdef) and list(glyphs[glyph_name].getCoordinates(glyphs)[0]) == list(notdef):
            problems.append(f"{resource} code {code}: draws the .notdef box")
    return problems


def embedded_font_files(reader: PdfReader, page_index: int, library: FontLibrary) -> list[Path]:
    """The source files of the fonts embedded in a page, found by PostScript name."""
    by_name = {face.postscript_name: face for face in library.loaded_faces()}
    files = []
    for font in reader.pages[page_index]["/Resources"]["/Font"].values():
        base_name = str(font.get_object()["/BaseFont"]).split("+", 1)[-1]
        face = by_name[base_name]
        files.append((face.path, face.subfont_index))
    return files


# ---- the tests -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("language", [language for language in SAMPLES if language not in RIGHT_TO_LEFT])
def test_left_to_right_page_text_round_trips(books: dict[str, Path], language: str) -> None:
    extracted, expected = normalise(pdftotext(books[language], 2)), normalise(SAMPLES[language][1])
    if language in ("ja", "zh"):
        extracted, expected = re.sub(r"\s", "", extracted), re.sub(r"\s", "", expected)
    assert expected in extracted
    assert normalise(SAMPLES[language][0]) in normalise(pdftotext(books[language], 1))


@pytest.mark.parametrize("language", RIGHT_TO_LEFT)
def test_right_to_left_words_come_back_in_reading_order(books: dict[str, Path], language: str) -> None:
    extracted = words(pdftotext(books[language], 2))
    expected = words(SAMPLES[language][1])
    assert extracted[: len(expected)] == expected


@pytest.mark.parametrize("language", RIGHT_TO_LEFT)
def test_right_to_left_glyphs_are_drawn_right_to_left_and_right_aligned(books: dict[str, Path], language: str) -> None:
    layout = pdftotext(books[language], 2, "-bbox")
    boxes = sorted(((float(y_min) + float(y_max)) / 2, float(x_min), float(x_max), unicodedata.normalize("NFKC", text))
                   for x_min, y_min, x_max, y_max, text in re.findall(
                       r'xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]+)<', layout))
    lines: list[list[tuple[float, float, str]]] = []
    last_middle = None
    for middle, x_min, x_max, text in boxes:
        if last_middle is None or middle - last_middle > 8:
            lines.append([])
        lines[-1].append((x_min, x_max, text))
        last_middle = middle
    reading_order = []
    text_lines = [line for line in lines if len(line) > 1]
    for line in text_lines:
        for _, _, text in sorted(line, key=lambda box: -box[0]):
            reading_order.append(text[::-1] if any(unicodedata.bidirectional(char) in ("R", "AL") for char in text) else text)
    assert words(" ".join(reading_order)) == words(SAMPLES[language][1])
    right_edges = {round(max(x_max for _, x_max, _ in line)) for line in text_lines}
    assert len(text_lines) >= 2 and len(right_edges) == 1, "every line ends at the same right edge"
    first_left, last_left = (min(x_min for x_min, _, _ in line) for line in (text_lines[0], text_lines[-1]))
    assert last_left > first_left, "a short last line starts further right"


def test_arabic_letters_are_drawn_joined(books: dict[str, Path]) -> None:
    drawn = "".join(re.findall(r">([^<]+)</word>", pdftotext(books["ar"], 2, "-bbox")))
    arabic = [char for char in drawn if unicodedata.bidirectional(char) == "AL" and unicodedata.category(char)[0] == "L"]
    assert arabic and all(0xFB50 <= ord(char) <= 0xFEFF for char in arabic), "every letter in its contextual presentation form"
    assert {"\ufe8e", "\ufef4"} & set(drawn), "final alef / medial yeh forms appear"


@pytest.mark.parametrize("language", SAMPLES)
def test_every_drawn_glyph_exists_in_an_embedded_font(books: dict[str, Path], language: str) -> None:
    reader = PdfReader(books[language])
    for page_index in range(len(reader.pages)):
        assert missing_glyphs(reader, page_index) == []


@pytest.mark.parametrize("language", SAMPLES)
def test_every_character_is_covered_by_a_font_embedded_in_the_page(books: dict[str, Path], language: str) -> None:
    reader = PdfReader(books[language])
    covered: set[int] = set()
    for path, index in embedded_font_files(reader, 1, default_font_library()):
        covered |= set(FontFile(path, fontNumber=index).getBestCmap())
    assert [char for char in SAMPLES[language][1] if not char.isspace() and ord(char) not in covered] == []
    base_names = [str(font.get_object()["/BaseFont"]) for font in reader.pages[1]["/Resources"]["/Font"].values()]
    assert any(EXPECTED_FONTS[language] in name for name in base_names), base_names


def test_devanagari_is_shaped_into_conjuncts(books: dict[str, Path]) -> None:
    """Without ActualText (pypdf ignores it) the drawn glyphs show: conjuncts and reordered vowel signs."""
    raw = PdfReader(books["hi"]).pages[1].extract_text()
    assert any(0xE000 <= ord(char) <= 0xF8FF for char in raw), "HarfBuzz glyphs with no Unicode value of their own"
    assert "क्योंकि" not in raw


def test_the_tofu_check_catches_a_missing_glyph(tmp_path: Path) -> None:
    """The glyph check is not vacuous: Hangul drawn directly in a Latin-only font is reported."""
    from reportlab.pdfgen.canvas import Canvas

    face = default_font_library().default_face()
    buffer = io.BytesIO()
    canvas = Canvas(buffer, initialFontName=face.name)
    canvas.setFont(face.name, 20)
    canvas.drawString(50, 700, "Hi 민지")
    canvas.save()
    assert missing_glyphs(PdfReader(io.BytesIO(buffer.getvalue())), 0)


def test_missing_script_font_is_left_out_with_one_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    latin_only = tmp_path / "fonts"
    latin_only.mkdir()
    (latin_only / "DejaVuSans.ttf").symlink_to(default_font_library().default_face().path)
    caplog.set_level("WARNING", logger="webapp.book.fonts")
    pdf = _book("ko", "민지는 Tom과 놀았어요. 민지는 웃었어요.", fonts=FontLibrary([latin_only]))
    path = tmp_path / "book.pdf"
    path.write_bytes(pdf)
    reader = PdfReader(path)
    assert all(missing_glyphs(reader, index) == [] for index in range(len(reader.pages)))
    text = normalise(pdftotext(path, 2))
    assert "Tom" in text and not re.search("[가-힣]", text)
    assert len([record for record in caplog.records if "hangul script" in record.getMessage()]) == 1


def test_font_dirs_setting_is_searched_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own = tmp_path / "own-fonts"
    own.mkdir()
    (own / "NotoSans-Regular.ttf").symlink_to(default_font_library().default_face().path)
    monkeypatch.setenv("FABULA_FONT_DIRS", f"{own}:{tmp_path / 'missing'}")
    assert font_directories()[:2] == [own, tmp_path / "missing"]
    assert FontLibrary().default_face().path == own / "NotoSans-Regular.ttf"


def test_fonts_that_cannot_be_embedded_are_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "fonts"
    folder.mkdir()
    (folder / "NotoSans-Regular.ttf").write_bytes(b"OTTO" + bytes(200))  # the first choice, unreadable
    (folder / "DejaVuSans.ttf").symlink_to(default_font_library().default_face().path)
    caplog.set_level("WARNING", logger="webapp.book.fonts")
    library = FontLibrary([folder])
    assert library.default_face().path == folder / "DejaVuSans.ttf"
    assert any("cannot be embedded" in record.getMessage() for record in caplog.records)
    path = tmp_path / "book.pdf"
    path.write_bytes(_book("en", "Still readable.", fonts=library))
    assert "Still readable." in normalise(pdftotext(path, 2))


def test_emoji_are_drawn_from_a_font_that_has_them_or_left_out(tmp_path: Path) -> None:
    path = tmp_path / "emoji.pdf"
    path.write_bytes(_book("en", "Mia ❤ her cat 🐱 and 🦄 unicorns 👩🏽‍🚀!"))
    reader = PdfReader(path)
    assert missing_glyphs(reader, 1) == []
    text = normalise(pdftotext(path, 2))
    assert "Mia" in text and "unicorns" in text and "🐱" in text
