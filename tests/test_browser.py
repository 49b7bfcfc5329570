"""The studio page in headless Chromium against `fabula up --profile tiny`: a visitor uploads a photo, picks
Korean and 3 pages, watches the pages arrive, downloads the PDF, finds the reader, EPUB and audiobook links, scans
the QR code (it opens the phone reader), repaints a page, and is told in plain words when a file is not a photo.
Screenshots of each step are saved under the test's tmp_path."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from bench.studio import running_studio
from shared.settings import Settings

if TYPE_CHECKING:  # Playwright is imported inside the tests, which skip without a browser
    from playwright.sync_api import Browser

pytestmark = pytest.mark.browser

PHOTO = Path(__file__).parent / "assets" / "photo.jpg"
PAGES = 3
STEP_TIMEOUT_MS = 150_000


@pytest.fixture(scope="module")
def fabula_up(tiny_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`fabula up --profile tiny` as a subprocess on free ports; yields the web app's address."""
    with running_studio("tiny", tmp_path_factory.mktemp("fabula-up"), cache_dir=tiny_settings.cache_dir) as url:
        yield url


def _decode_qr(png: bytes) -> str:
    """OpenCV's classic detector misses a few percent of clean codes (measured: ~3 % of 200 random book links,
    opencv 5.0); the ArUco-based detector reads them all, so it gets a second look."""
    import cv2
    import numpy as np

    image = cv2.imdecode(np.frombuffer(png, dtype=np.uint8), cv2.IMREAD_COLOR)
    for detector in (cv2.QRCodeDetector(), cv2.QRCodeDetectorAruco()):
        text, _, _ = detector.detectAndDecode(image)
        if text:
            return text
    return ""


def test_visitor_makes_downloads_scans_and_edits_a_book(fabula_up: str, browser: Browser, tmp_path: Path) -> None:
    from playwright.sync_api import expect
    from pypdf import PdfReader

    page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page.set_default_timeout(30_000)

    def shot(name: str) -> None:
        page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)

    # A first-time visitor sees what this is, and that it is a demo.
    page.goto(fabula_up + "/")
    expect(page.locator("#generate-button")).to_be_visible(timeout=60_000)
    expect(page.locator("#demo-banner")).to_contain_text("Demo mode: tiny random models")
    shot("01-start")

    # Photo, Korean, 3 pages.
    page.locator("#photo-input input[type=file]").set_input_files(str(PHOTO))
    expect(page.locator("#photo-input img").first).to_be_visible()
    language = page.locator("#language-dropdown input")
    language.click()
    language.fill("Korean")
    page.get_by_role("option", name=re.compile("Korean")).click()
    expect(language).to_have_value(re.compile("한국어"))
    pages = page.locator("#pages-input input")
    pages.fill(str(PAGES))
    pages.press("Enter")
    expect(pages).to_have_value(str(PAGES))
    shot("02-options")

    # Generate; pages appear as they are painted, then the book is ready: the cover and every page, labelled.
    page.locator("#generate-button").click()
    progress = page.locator("#progress .fabula-progress")
    expect(progress).to_have_attribute("data-status", re.compile("queued|running|done"), timeout=STEP_TIMEOUT_MS)
    shot("03-progress")
    expect(page.locator("#pages-gallery .thumbnail-item").first).to_be_visible(timeout=STEP_TIMEOUT_MS)
    shot("04-pages-arriving")
    expect(progress).to_have_attribute("data-status", "done", timeout=STEP_TIMEOUT_MS)
    expect(page.locator("#pages-gallery .thumbnail-item")).to_have_count(PAGES + 1)
    expect(page.locator("#pages-gallery .caption-label")).to_have_text(["Cover"] + [f"Page {number}" for number in range(1, PAGES + 1)])
    last = page.locator("#pages-gallery .thumbnail-item").last
    assert page.evaluate("element => { const box = element.closest('.grid-wrap').getBoundingClientRect();"
                         " const item = element.getBoundingClientRect(); return item.bottom <= box.bottom + 1; }", last.element_handle())
    expect(page.locator("#story-reader article.page-text")).to_have_count(PAGES)
    expect(progress).to_contain_text(f"Your book is ready: {PAGES} pages.")
    expect(page.locator("#book-link a.reader-link")).to_have_text("Read it on a phone")
    expect(page.locator("#qr-caption")).to_have_text("Scan to read on a phone")
    # The server listens on loopback, so the page says a phone cannot open the code, and how to fix it.
    expect(page.locator("#address-warning")).to_contain_text("FABULA_PUBLIC_URL")
    shot("05-book-ready")

    # Every page is in the Page list, after the cover.
    page_choice = page.locator("#page-dropdown input")
    page_choice.click()
    # Each option's text starts with a check mark that only shows on the chosen one.
    names = ["Cover"] + [f"Page {number}" for number in range(1, PAGES + 1)]
    expect(page.get_by_role("option")).to_have_text([re.compile(rf"(^|\s){name}$") for name in names])
    page_choice.press("Escape")

    # The PDF downloads from the page: cover + 3 pages + the QR page.
    with page.expect_download() as download_info:
        page.locator("#book-file a").first.click()
    book_path = tmp_path / "book.pdf"
    download_info.value.save_as(book_path)
    assert book_path.read_bytes().startswith(b"%PDF")
    assert len(PdfReader(str(book_path)).pages) == PAGES + 2

    # The QR code on the page decodes to the reader link shown, an HTML page; the PDF sits under the same token.
    link = page.locator("#book-link a.share-link").inner_text().strip()
    match = re.fullmatch(re.escape(fabula_up) + r"/read/([A-Za-z0-9_-]{43})", link)
    assert match, link
    token = match.group(1)
    assert page.locator("#book-link a.reader-link").get_attribute("href") == link
    qr_source = page.locator("#book-qr img").first.get_attribute("src")
    qr_png = page.request.get(qr_source if qr_source.startswith("http") else fabula_up + qr_source).body()
    (tmp_path / "qr-source.png").write_bytes(qr_png)
    assert _decode_qr(qr_png) == link
    shown_qr = page.locator("#book-qr img").first.screenshot(path=str(tmp_path / "qr-as-shown.png"))
    assert _decode_qr(shown_qr) == link
    reader = httpx.get(link, timeout=30)
    assert reader.status_code == 200 and reader.headers["content-type"].startswith("text/html")
    assert httpx.get(f"{fabula_up}/books/{token}.pdf", timeout=30).content == book_path.read_bytes()

    # The EPUB is linked beside the PDF; the audiobook too when the book was read aloud, else the page says why.
    epub_link = page.locator("#book-link a.epub-link").get_attribute("href")
    assert epub_link == f"{fabula_up}/books/{token}.epub"
    assert httpx.get(epub_link, timeout=30).content.startswith(b"PK")
    if page.locator("#book-link a.audiobook-link").count():
        audiobook = httpx.get(page.locator("#book-link a.audiobook-link").get_attribute("href"), timeout=30)
        assert audiobook.status_code == 200 and audiobook.content
    else:
        expect(page.locator("#book-link p.narration-note")).not_to_be_empty()

    # Repaint page 2: only that picture changes, and the book is bound again.
    thumbnails = page.locator("#pages-gallery .thumbnail-item img")
    # Thumbnail 0 is the cover, so page N is thumbnail N.
    before = [thumbnails.nth(index).get_attribute("src") for index in range(PAGES + 1)]
    page_choice.click()
    page.get_by_role("option", name="Page 2", exact=True).click()
    page.locator("#repaint-button").click()
    expect(progress).to_have_attribute("data-status", "done", timeout=STEP_TIMEOUT_MS)
    page.wait_for_function(
        "([index, old]) => { const images = document.querySelectorAll('#pages-gallery .thumbnail-item img');"
        " return images.length > index && images[index].getAttribute('src') !== old; }",
        arg=[2, before[2]], timeout=STEP_TIMEOUT_MS,
    )
    after = [thumbnails.nth(index).get_attribute("src") for index in range(PAGES + 1)]
    assert after[1] == before[1] and after[3] == before[3] and after[2] != before[2]
    expect(page_choice).to_have_value("Page 2")  # the choice stays after the edit
    shot("06-page-2-repainted")

    # A text file renamed .jpg is refused in one notice, in plain words, and no field is marked as failed.
    notes = tmp_path / "holiday.jpg"
    notes.write_text("Dear diary, today we went to the sea.")
    page.locator("#photo-input button[aria-label='Remove Image']").click()
    page.locator("#photo-input input[type=file]").set_input_files(str(notes))
    expect(page.get_by_text("The uploaded photo is not an image Fabula can read.", exact=False).first).to_be_visible()
    page.wait_for_timeout(800)  # let the notice finish fading in before the screenshot
    expect(page.locator(".toast-body")).to_have_count(1)
    assert "`" not in page.locator(".toast-body").inner_text()
    expect(page.locator("[data-testid=status-tracker] span.error:visible")).to_have_count(0)
    shot("07-not-a-photo")
    page.close()
