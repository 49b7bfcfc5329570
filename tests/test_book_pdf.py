"""The book PDF: its pages, metadata, brand kit, pictures, and text that tries to break it."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from pydantic import ValidationError
from pypdf import PdfReader
from reportlab.lib.colors import white

from shared.errors import InvalidImage
from webapp.book.content import BookBrand, BookContent, BookPage
from webapp.book.pdf import render_book
from webapp.book.theme import contrast, theme_for

needs_poppler = pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs poppler-utils (pdftotext, pdftoppm)")

DOWNLOAD_URL = "http://127.0.0.1:7860/books/Qm9va1Rva2VuLXRoYXQtaXMtNDMtY2hhcnMtbG9uZw.pdf"
PAGE_POINTS = 612.0
BRAND_PRIMARY, BRAND_SECONDARY, LOGO_GREEN = "#7A1F5C", "#FFD166", (0, 170, 60)


def png(size: tuple[int, int] = (64, 64), color: tuple[int, int, int] = (90, 140, 200)) -> bytes:
    image = Image.new("RGB", size, color)
    ImageDraw.Draw(image).ellipse((size[0] // 4, size[1] // 4, size[0] * 3 // 4, size[1] * 3 // 4), fill=(250, 220, 120))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def logo_png() -> bytes:
    image = Image.new("RGBA", (120, 60), (0, 0, 0, 0))
    ImageDraw.Draw(image).rectangle((10, 10, 110, 50), fill=(*LOGO_GREEN, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def brand() -> BookBrand:
    return BookBrand(name="Acme Books", message="Thank you for reading with Acme!", logo_png=logo_png(),
                     primary_color=BRAND_PRIMARY, secondary_color=BRAND_SECONDARY,
                     cta_url="https://acme.example/more", cta_text="More stories at Acme")


def book(texts: list[str] | None = None, **overrides) -> BookContent:
    texts = texts or ["Maya found a small cat in the garden.", "They shared a sandwich.", "The cat purred all night."]
    fields = dict(title="Maya and the Cat", author="Fabula", language="en", subject="A girl and a cat", cover_png=png((96, 64)),
                  pages=[BookPage(number=index, text=text, image_png=png()) for index, text in enumerate(texts, start=1)],
                  download_url=DOWNLOAD_URL)
    fields.update(overrides)
    return BookContent(**fields)


def write(tmp_path: Path, pdf: bytes, name: str = "book.pdf") -> Path:
    path = tmp_path / name
    path.write_bytes(pdf)
    return path


def page_text(path: Path, page: int, *extra: str) -> str:
    return subprocess.run(["pdftotext", "-enc", "UTF-8", "-f", str(page), "-l", str(page), *extra, str(path), "-"],
                          check=True, capture_output=True, text=True).stdout


def folded(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    return re.sub(r"\s+", " ", "".join(char for char in text if unicodedata.category(char) != "Cf")).strip()


def render_page(path: Path, page: int, dpi: int = 40) -> np.ndarray:
    prefix = path.parent / f"{path.stem}-page{page}"
    command = ["pdftoppm", "-r", str(dpi), "-f", str(page), "-l", str(page), "-png", "-singlefile", str(path), str(prefix)]
    subprocess.run(command, check=True)
    return np.asarray(Image.open(f"{prefix}.png").convert("RGB")).astype(int)


def has_color(pixels: np.ndarray, color: tuple[int, int, int], tolerance: int = 6) -> bool:
    return bool((np.abs(pixels - np.array(color)).max(axis=2) <= tolerance).any())


def rgb(hex_color: str) -> tuple[int, int, int]:
    return tuple(int(hex_color[index:index + 2], 16) for index in (1, 3, 5))


@pytest.fixture(scope="module")
def plain_book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(tmp_path_factory.mktemp("plain"), render_book(book()))


@pytest.fixture(scope="module")
def branded_book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(tmp_path_factory.mktemp("brand"), render_book(book(brand=brand(), author="Acme Books")))


@needs_poppler
def test_book_has_a_cover_one_page_per_story_page_and_a_qr_page(plain_book: Path) -> None:
    reader = PdfReader(plain_book)
    assert len(reader.pages) == 3 + 2
    assert all(tuple(map(float, page.mediabox[2:])) == (PAGE_POINTS, PAGE_POINTS) for page in reader.pages)
    assert "Maya and the Cat" in folded(page_text(plain_book, 1))
    assert "Maya found a small cat in the garden." in folded(page_text(plain_book, 2))
    last = folded(page_text(plain_book, 5))
    assert "The End" in last and "Scan to read this book on a phone" in last and DOWNLOAD_URL in last


def test_metadata_names_title_author_subject_language_and_creator(tmp_path: Path) -> None:
    reader = PdfReader(write(tmp_path, render_book(book(title="민지의 고양이", author="Fabula Studio", language="ko",
                                                        subject="A cat story <for kids>"))))
    metadata = reader.metadata
    assert (metadata.title, metadata.author, metadata.subject, metadata.creator) == (
        "민지의 고양이", "Fabula Studio", "A cat story <for kids>", "Fabula")
    assert reader.trailer["/Root"]["/Lang"] == "ko"


def test_right_to_left_book_declares_its_reading_direction(tmp_path: Path) -> None:
    reader = PdfReader(write(tmp_path, render_book(book(["قطة صغيرة."], language="ar"))))
    assert reader.trailer["/Root"]["/Lang"] == "ar"
    assert reader.trailer["/Root"]["/ViewerPreferences"]["/Direction"] == "/R2L"


@needs_poppler
def test_story_pages_are_numbered(tmp_path: Path) -> None:
    texts = ["One.", "Two.", "Three.", "Four."]
    numbers = (1, 2, 3, 14)
    pages = [BookPage(number=number, text=text) for number, text in zip(numbers, texts, strict=True)]
    path = write(tmp_path, render_book(book(texts, pages=pages)))
    for page, number in zip((2, 3, 4, 5), numbers, strict=True):
        assert str(number) in page_text(path, page).split()


def test_book_renders_the_same_bytes_every_time() -> None:
    assert render_book(book()) == render_book(book())


@needs_poppler
def test_brand_colours_logo_and_call_to_action_appear(branded_book: Path, plain_book: Path) -> None:
    cover = render_page(branded_book, 1)
    assert (np.abs(cover[2, 2] - rgb(BRAND_PRIMARY)) <= 3).all(), "the cover is in the brand's primary colour"
    assert has_color(cover, rgb(BRAND_SECONDARY)) and has_color(cover, LOGO_GREEN)
    assert has_color(render_page(branded_book, 2), rgb(BRAND_SECONDARY)), "page numbers sit on the secondary colour"
    last_page = render_page(branded_book, 5)
    assert has_color(last_page, LOGO_GREEN) and has_color(last_page, rgb(BRAND_SECONDARY))
    last_text = folded(page_text(branded_book, 5))
    assert "More stories at Acme" in last_text and "Thank you for reading with Acme!" in last_text
    assert "Acme Books" in folded(page_text(branded_book, 2))
    links = [annotation.get_object()["/A"]["/URI"] for annotation in PdfReader(branded_book).pages[4]["/Annots"]]
    assert "https://acme.example/more" in links and DOWNLOAD_URL in links

    plain_cover = render_page(plain_book, 1)
    assert (np.abs(plain_cover[2, 2] - rgb("#1F3A5F")) <= 3).all() and not has_color(plain_cover, LOGO_GREEN)
    assert "Acme" not in page_text(plain_book, 5)


def test_pale_brand_colours_give_way_to_readable_ones() -> None:
    theme = theme_for(BookBrand(name="Sunny", primary_color="#FFE066", secondary_color="#FFFFFF"))
    assert contrast(theme.accent, white) >= 3, "headings and links on white pages stay readable"
    assert contrast(theme.on_primary, theme.primary) >= 4.5 and contrast(theme.on_badge, theme.badge) >= 4.5
    assert contrast(theme.badge, white) > 1.2, "page-number discs stay visible on white paper"


@needs_poppler
def test_bilingual_book_prints_the_original_under_the_translation(tmp_path: Path) -> None:
    content = book(["민지는 고양이를 찾았어요."], language="ko", title="민지의 고양이", original_title="Minji's Cat",
                   original_texts=["Minji found a cat."])
    path = write(tmp_path, render_book(content))
    assert "Minji's Cat" in folded(page_text(path, 1))
    layout = page_text(path, 2, "-bbox")
    translated = float(re.search(r'yMin="([\d.]+)"[^>]*>민지는<', layout).group(1))
    original = float(re.search(r'yMin="([\d.]+)"[^>]*>Minji<', layout).group(1))
    assert original > translated, "the original sits below the translation"


HOSTILE_TEXTS = {
    "markup": ("<b>bold</b> & </para> <font name=x>big</font> <br/> &amp; <para>",
               "<b>bold</b> & </para> <font name=x>big</font> <br/> &amp; <para>"),
    "emoji": ("Maya ❤ her cat 🐱!", "Maya ❤ her cat 🐱!"),
    "control characters": ("Tom\x00 said\x07 hi\x1b[31m\x7f there\r\nagain", "Tom said hi[31m there again"),
    "bidi overrides and marks": ("\u202eevil\u202c \u200fmark\u200e \u2066iso\u2069 done", "evil mark iso done"),
    "private use and noncharacters": ("odd \ue000 chars \ufffe here \U0010fffd", "odd chars here"),
}


@pytest.mark.parametrize("case", HOSTILE_TEXTS)
@needs_poppler
def test_hostile_text_is_drawn_as_plain_text(tmp_path: Path, case: str) -> None:
    text, expected = HOSTILE_TEXTS[case]
    path = write(tmp_path, render_book(book([text], title=text, subject=text)))
    assert len(PdfReader(path).pages) == 3
    assert expected in folded(page_text(path, 2))
    assert expected in folded(page_text(path, 1))


@needs_poppler
def test_a_500_character_word_wraps_inside_the_margins(tmp_path: Path) -> None:
    word = "".join("abcdefghij"[index % 10] for index in range(500))
    path = write(tmp_path, render_book(book([f"Start {word} end."])))
    text = page_text(path, 2)
    assert word in re.sub(r"\s", "", text)
    boxes = re.findall(r'xMin="([\d.]+)" yMin="[\d.]+" xMax="([\d.]+)"', page_text(path, 2, "-bbox"))
    assert len(boxes) > 5
    assert all(float(x_min) >= 36 and float(x_max) <= PAGE_POINTS - 36 for x_min, x_max in boxes)


@needs_poppler
def test_long_page_text_shrinks_to_fit_the_page(tmp_path: Path) -> None:
    text = " ".join(["The little cat walked all the way around the garden and back again."] * 25)
    path = write(tmp_path, render_book(book([text])))
    boxes = re.findall(r'yMin="([\d.]+)" xMax="[\d.]+" yMax="([\d.]+)"', page_text(path, 2, "-bbox"))
    assert all(float(y_min) >= 0 and float(y_max) <= PAGE_POINTS for y_min, y_max in boxes)
    assert folded(text) in folded(page_text(path, 2))


@needs_poppler
def test_a_24_page_book_renders(tmp_path: Path) -> None:
    texts = [f"Page {number}: the cat and Maya had another small adventure together." for number in range(1, 25)]
    path = write(tmp_path, render_book(book(texts)))
    assert len(PdfReader(path).pages) == 26
    assert "Page 24:" in page_text(path, 25)


def test_pictures_are_embedded_at_print_resolution_not_beyond(tmp_path: Path) -> None:
    big, small = png((2400, 2400)), png((64, 64))
    reader = PdfReader(write(tmp_path, render_book(book(["Big.", "Small."], pages=[
        BookPage(number=1, text="Big.", image_png=big), BookPage(number=2, text="Small.", image_png=small)]))))
    big_widths = [image.image.width for image in reader.pages[1].images]
    small_widths = [image.image.width for image in reader.pages[2].images]
    assert small_widths == [64], "small pictures are never upscaled"
    printed_inches = 7.0  # at most the text width of the page
    assert big_widths and max(big_widths) <= printed_inches * 300 + 1 and max(big_widths) >= 1000


def test_damaged_picture_is_refused_naming_the_page() -> None:
    pages = [BookPage(number=1, text="One."), BookPage(number=2, text="Two.", image_png=b"not a png")]
    content = book(["One.", "Two."], pages=pages)
    with pytest.raises(InvalidImage) as caught:
        render_book(content)
    assert caught.value.param == "pages[1].image_png"


@pytest.mark.parametrize(
    ("change", "field", "rule"),
    [
        (lambda: BookBrand(name="Acme", primary_color="red"), "primary_color", "#RRGGBB"),
        (lambda: BookBrand(name="Acme", cta_url="javascript:alert(1)"), "cta_url", "http"),
        (lambda: book(download_url="ftp://example.com/book.pdf"), "download_url", "http"),
        (lambda: book(language="not a language"), "language", "language code"),
        (lambda: book(original_texts=["only one"]), "original_texts", "one text per page"),
        (lambda: book(pages=[]), "pages", "at least 1"),
        (lambda: BookPage(number=1, text="lone \ud800 surrogate"), "text", "unicode"),
    ],
)
def test_invalid_content_is_refused_naming_the_field_and_rule(change, field: str, rule: str) -> None:
    with pytest.raises(ValidationError) as caught:
        change()
    assert field in str(caught.value) and rule in str(caught.value)
