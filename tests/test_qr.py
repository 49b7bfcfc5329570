"""The QR code on a book's last page scans (with OpenCV) to exactly the book's download link."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from webapp.book.content import BookBrand, BookContent, BookPage
from webapp.book.pdf import render_book
from webapp.book.qr import QUIET_ZONE, qr_modules, qr_png

TOKEN = "kY7Qm2vXw9Lr4Tz8bN1cJ5fH3gD6sA0eUoPiRtWyZxM"  # 43 characters, like secrets.token_urlsafe(32)
DOWNLOAD_URL = f"http://127.0.0.1:7860/books/{TOKEN}.pdf"


def decode(pixels: np.ndarray) -> str:
    text, _, _ = cv2.QRCodeDetector().detectAndDecode(pixels)
    return text


@pytest.mark.parametrize("box_size", [4, 10])
def test_qr_png_decodes_to_the_url(box_size: int) -> None:
    image = Image.open(io.BytesIO(qr_png(DOWNLOAD_URL, box_size=box_size)))
    pixels = np.asarray(image.convert("L"))
    assert decode(pixels) == DOWNLOAD_URL
    modules = len(qr_modules(DOWNLOAD_URL))
    assert image.size == (modules * box_size, modules * box_size)
    quiet = QUIET_ZONE * box_size
    assert pixels[:quiet].min() == 255 and pixels[:, :quiet].min() == 255, "a white quiet zone of 4 modules"


def test_qr_modules_include_the_quiet_zone() -> None:
    modules = qr_modules(DOWNLOAD_URL)
    assert not any(modules[0]) and not any(row[0] for row in modules)
    assert all(modules[QUIET_ZONE][QUIET_ZONE:QUIET_ZONE + 7]), "the finder pattern starts right after the quiet zone"


@pytest.mark.parametrize(("url", "box_size"), [("", 10), (DOWNLOAD_URL, 0)])
def test_qr_png_refuses_bad_arguments(url: str, box_size: int) -> None:
    with pytest.raises(ValueError):
        qr_png(url, box_size=box_size)


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="needs poppler-utils (pdftoppm)")
@pytest.mark.parametrize("branded", [False, True], ids=["house colours", "brand kit"])
def test_last_page_qr_code_scans_to_the_download_url(tmp_path: Path, branded: bool) -> None:
    brand = BookBrand(name="Acme", primary_color="#0B6E4F", secondary_color="#F7C59F", cta_url="https://acme.example/",
                      cta_text="Visit Acme", message="More stories every week.") if branded else None
    content = BookContent(title="Scan me", language="en", subject="QR", download_url=DOWNLOAD_URL, brand=brand,
                          pages=[BookPage(number=1, text="Once upon a time.")])
    pdf = tmp_path / "book.pdf"
    pdf.write_bytes(render_book(content))
    command = ["pdftoppm", "-r", "150", "-f", "3", "-l", "3", "-gray", "-png", "-singlefile", str(pdf), str(tmp_path / "last")]
    subprocess.run(command, check=True)
    pixels = np.asarray(Image.open(tmp_path / "last.png").convert("L"))
    assert decode(pixels) == DOWNLOAD_URL


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="needs poppler-utils (pdftoppm)")
def test_qr_codes_drawn_in_the_pdf_decode_for_many_random_links(tmp_path: Path) -> None:
    """Hundreds of book links, drawn as the last page draws them and rendered at 150 dpi: every one decodes.
    (Overlapping module rows filled with the even-odd rule would leave white seams that break some codes.)"""
    import secrets

    from reportlab.pdfgen.canvas import Canvas

    from webapp.book.pages import PAGE_HEIGHT, PAGE_WIDTH, QR_SIZE, draw_qr

    hosts = ["http://127.0.0.1:7860", "http://192.168.1.23:7860", "https://books.example.org", "https://fabula.example.com:8443/prefix"]
    urls = [f"{hosts[index % len(hosts)]}/books/{secrets.token_urlsafe(32)}.pdf" for index in range(200)]
    pdf = tmp_path / "codes.pdf"
    canvas = Canvas(str(pdf), pagesize=(PAGE_WIDTH, PAGE_HEIGHT))
    for url in urls:
        draw_qr(canvas, url, x=(PAGE_WIDTH - QR_SIZE) / 2, y=(PAGE_HEIGHT - QR_SIZE) / 2, size=QR_SIZE)
        canvas.showPage()
    canvas.save()
    subprocess.run(["pdftoppm", "-r", "150", "-gray", "-png", str(pdf), str(tmp_path / "code")], check=True)
    pages = sorted(tmp_path.glob("code-*.png"))
    assert len(pages) == len(urls)
    # OpenCV's Aruco-based detector, which finds codes as a phone's scanner does; the older `QRCodeDetector`
    # misses about 1 % of these clean renders (measured: 2 of 200) where the Aruco one reads all.
    detector = cv2.QRCodeDetectorAruco()
    decoded = [detector.detectAndDecode(np.asarray(Image.open(page).convert("L")))[0] for page in pages]
    failures = [url for url, text in zip(urls, decoded, strict=True) if text != url]
    assert not failures, f"{len(failures)} of {len(urls)} codes did not decode, e.g. {failures[:2]}"
