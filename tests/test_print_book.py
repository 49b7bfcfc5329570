"""Books a print shop accepts: each print size's page boxes (`pdfinfo -box`), text inside the safe margin
(`pdftotext -bbox`), right-to-left books bound on the right, and a tiny-profile book whose every picture is
upscaled to 300 ppi at its printed size (`pdfimages -list`) while the EPUB keeps the screen-sized pictures."""

from __future__ import annotations

import asyncio
import io
import re
import subprocess
import zipfile
from pathlib import Path
from xml.etree import ElementTree

import pytest
from PIL import Image

from webapp.api.links import story_view
from webapp.book.content import BookBrand, BookContent, BookPage
from webapp.book.images import PRINT_DPI
from webapp.book.pdf import render_pages
from webapp.book.print_check import check_print
from webapp.book.print_sizes import BLEED, SAFE_MARGIN, SLUG, PrintSize, paper_for, print_picture_width
from webapp.jobs.progress import Artifacts
from webapp.story.options import StoryOptions
from webapp.ui.render import print_check_html
from webapp.workshop import build_workshop

PRINT_SIZES = [size for size in PrintSize if size is not PrintSize.screen]
TRIM_POINTS = {PrintSize.square_8_5: (612, 612), PrintSize.eight_by_ten: (576, 720), PrintSize.a4: (595.28, 841.89), PrintSize.letter: (612, 792)}
TOLERANCE = 0.02  # points, as pdfinfo rounds


def _png(side: int) -> bytes:
    buffer = io.BytesIO()
    Image.radial_gradient("L").resize((side, side)).convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def _book(language: str = "en", text: str = "Mia found a red kite in the tall grass. It pulled and danced in the wind all afternoon.") -> BookContent:
    picture = _png(2100)
    return BookContent(
        title="The Red Kite and the Long Summer Afternoon", language=language, cover_png=picture,
        pages=[BookPage(number=number, text=text, image_png=picture) for number in (1, 2, 3)],
        download_url="https://example.com/read/abc",
        brand=BookBrand(name="Acme Books", message="Every child deserves a book of their own.", cta_url="https://example.com/shop", cta_text="Visit"),
    )


def _boxes(pdf: Path) -> dict[int, dict[str, tuple[float, ...]]]:
    """Page → box name → (x0, y0, x1, y1), as `pdfinfo -box` reports them."""
    output = subprocess.run(["pdfinfo", "-box", "-f", "1", "-l", "99", str(pdf)], check=True, capture_output=True, text=True).stdout
    boxes: dict[int, dict[str, tuple[float, ...]]] = {}
    for page, name, values in re.findall(r"Page\s+(\d+) (\w+)Box:\s+([\d.\s]+)", output):
        boxes.setdefault(int(page), {})[name] = tuple(float(value) for value in values.split())
    return boxes


def _write(tmp_path: Path, pdf: bytes, name: str = "book.pdf") -> Path:
    path = tmp_path / name
    path.write_bytes(pdf)
    return path


@pytest.mark.parametrize("size", PRINT_SIZES, ids=lambda size: size.value)
def test_each_print_size_has_its_trim_and_3_mm_of_bleed_at_the_outer_edges(tmp_path: Path, size: PrintSize) -> None:
    boxes = _boxes(_write(tmp_path, render_pages(_book(), paper=paper_for(size)).pdf))
    width, height = TRIM_POINTS[size]
    assert len(boxes) == 5
    for page, box in boxes.items():
        media, bleed, trim = box["Media"], box["Bleed"], box["Trim"]
        assert bleed == media
        assert trim[2] - trim[0] == pytest.approx(width, abs=TOLERANCE) and trim[3] - trim[1] == pytest.approx(height, abs=TOLERANCE)
        assert trim[1] - bleed[1] == pytest.approx(BLEED) and bleed[3] - trim[3] == pytest.approx(BLEED)  # 3.175 mm
        # Recto pages (1, 3, 5) bind on the left: bleed on the right edge only; verso pages the other way.
        outer, spine = (bleed[2] - trim[2], trim[0] - bleed[0]) if page % 2 else (trim[0] - bleed[0], bleed[2] - trim[2])
        assert outer == pytest.approx(BLEED) and spine == 0


@pytest.mark.parametrize("size", [PrintSize.eight_by_ten, PrintSize.a4], ids=lambda size: size.value)
def test_every_word_sits_inside_the_safe_margin(tmp_path: Path, size: PrintSize) -> None:
    path = _write(tmp_path, render_pages(_book(), paper=paper_for(size)).pdf)
    boxes = _boxes(path)
    xhtml = subprocess.run(["pdftotext", "-bbox", str(path), "-"], check=True, capture_output=True, text=True).stdout
    pages = ElementTree.fromstring(re.sub(r"<!DOCTYPE[^>]*>", "", xhtml).replace('xmlns="http://www.w3.org/1999/xhtml"', ""))
    words = 0
    for number, page in enumerate(pages.iter("page"), start=1):
        media_height = float(page.get("height", 0))
        left, bottom, right, top = boxes[number]["Trim"]
        for word in page.iter("word"):
            words += 1
            x_min, x_max = float(word.get("xMin", 0)), float(word.get("xMax", 0))
            y_min, y_max = media_height - float(word.get("yMax", 0)), media_height - float(word.get("yMin", 0))
            assert left + SAFE_MARGIN <= x_min and x_max <= right - SAFE_MARGIN, (number, word.text)
            assert bottom + SAFE_MARGIN <= y_min and y_max <= top - SAFE_MARGIN, (number, word.text)
    assert words > 60


def test_an_arabic_print_book_binds_on_the_right(tmp_path: Path) -> None:
    paper = paper_for(PrintSize.a4)
    rendered = render_pages(_book("ar", "وجدت ميا طائرة ورقية حمراء في العشب الطويل."), paper=paper)
    boxes = _boxes(_write(tmp_path, rendered.pdf))
    first, second = boxes[1], boxes[2]
    assert first["Trim"][2] == first["Media"][2] and first["Trim"][0] == pytest.approx(BLEED)  # spine on the right
    assert second["Trim"][0] == 0 and second["Media"][2] - second["Trim"][2] == pytest.approx(BLEED)
    assert b"/Direction /R2L" in rendered.pdf
    assert check_print(rendered.pdf, rendered.placements, paper, right_to_left=True, crop_marks=False).binding == "right"


def test_crop_marks_are_off_by_default_and_sit_in_a_slug_when_asked(tmp_path: Path) -> None:
    paper = paper_for(PrintSize.letter)
    plain = _boxes(_write(tmp_path, render_pages(_book(), paper=paper).pdf, "plain.pdf"))[1]
    marked = _boxes(_write(tmp_path, render_pages(_book(), paper=paper, crop_marks=True).pdf, "marked.pdf"))[1]
    assert plain["Media"] == plain["Bleed"]
    assert marked["Media"][2] - marked["Bleed"][2] == pytest.approx(SLUG) and marked["Bleed"][1] == pytest.approx(SLUG)
    assert marked["Trim"][2] - marked["Trim"][0] == pytest.approx(612)


def test_the_print_check_names_a_picture_that_cannot_reach_300_dpi() -> None:
    paper = paper_for(PrintSize.square_8_5)
    content = _book().model_copy(update={"pages": [BookPage(number=1, text="A short page.", image_png=_png(512))]})
    rendered = render_pages(content, paper=paper)
    check = check_print(rendered.pdf, rendered.placements, paper, right_to_left=False, crop_marks=False)
    assert not check.ready and check.fonts_embedded
    assert [picture.page for picture in check.pictures if not picture.ok] == [1]
    assert "page 1 picture" in check.problems[0] and "RGB" in check.colour
    shown = print_check_html(check)  # the studio shows the same lines as `fabula story`
    assert 'class="print-check not-ready"' in shown and "Not ready: The page 1 picture is" in shown


def _pdfimages(path: Path) -> list[tuple[int, int, int, int]]:
    """(width, height, x-ppi, y-ppi) of every image in the PDF."""
    output = subprocess.run(["pdfimages", "-list", str(path)], check=True, capture_output=True, text=True).stdout
    rows = [line.split() for line in output.splitlines()[2:] if line.strip()]
    return [(int(row[3]), int(row[4]), int(row[12]), int(row[13])) for row in rows]


async def test_a_tiny_print_book_prints_every_picture_at_300_ppi_and_keeps_screen_pictures_elsewhere(
    tiny_stack, tmp_path: Path, photo_bytes: bytes
) -> None:
    settings = tiny_stack.model_copy(update={"data_dir": tmp_path / "data"})
    workshop = build_workshop(settings, public_url="http://127.0.0.1:7860")
    try:
        options = StoryOptions(pages=2, print=PrintSize.eight_by_ten, narrate=False)
        record = workshop.stories.submit(photo_bytes, options)
        record = await asyncio.wait_for(workshop.stories.wait(record.id), timeout=300)
        assert record.status == "done", record.error
        artifacts = workshop.artifacts
        pdf = _write(tmp_path, artifacts.read(record.id, Artifacts.PDF))
        view = story_view(workshop.stories, record, "http://127.0.0.1:7860")
        epub = zipfile.ZipFile(io.BytesIO(artifacts.read(record.id, Artifacts.EPUB)))
        print_width = Image.open(io.BytesIO(artifacts.read(record.id, Artifacts.print_picture(1)))).width
        screen_width = Image.open(io.BytesIO(artifacts.read(record.id, Artifacts.picture(1)))).width
    finally:
        await workshop.aclose()
    images = _pdfimages(pdf)
    assert len(images) == 3  # the cover and two pages
    assert all(x_ppi >= PRINT_DPI and y_ppi >= PRINT_DPI for _, _, x_ppi, y_ppi in images), images
    assert print_width == print_picture_width(paper_for(PrintSize.eight_by_ten)) and screen_width == 64
    epub_pictures = [Image.open(io.BytesIO(epub.read(name))).width for name in epub.namelist() if name.endswith(".png")]
    assert epub_pictures and max(epub_pictures) == 64
    assert view.print_check is not None and view.print_check.ready
    assert view.print_check.lowest_dpi is not None and view.print_check.lowest_dpi >= PRINT_DPI
