"""How soon a newcomer sees the first page in the studio: `fabula up` (the offline profile by default), a photo
uploaded in headless Chromium, **Make my storybook** pressed, then the seconds until page 1 shows its picture and
its words, until every page is ready, and until the book is bound.

    python bench/first_page.py                       # offline profile, 8 pages, 3 books
    python bench/first_page.py --pages 4 --books 1 --profile tiny

The times are read in the browser (a MutationObserver notes the first moment page 1's picture and words are both on
the page), so they include everything a visitor waits for: the upload, the job, the services, the events stream and
Gradio's updates. The services' start-up is not counted; the first book is made on warm services (a book is made
once before the measured ones).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine_description  # noqa: E402
from bench.studio import running_studio  # noqa: E402

PHOTO = Path(__file__).resolve().parent.parent / "tests" / "assets" / "photo.jpg"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"]
WATCH = """() => {
  window.seen = {clicked: Date.now(), started: false, firstPage: null, ready: null, done: null};
  const look = () => {
    const progress = document.querySelector('#progress .fabula-progress');
    const status = progress ? progress.dataset.status : '';
    if (!window.seen.started) { if (status === 'queued' || status === 'running') window.seen.started = true; else return; }
    if (!window.seen.ready && progress && progress.dataset.pagesDone === progress.dataset.pagesTotal) window.seen.ready = Date.now();
    if (!window.seen.done && status === 'done') window.seen.done = Date.now();
    if (window.seen.firstPage) return;
    const captions = [...document.querySelectorAll('#pages-gallery .caption-label')].map(label => label.textContent.trim());
    const text = document.querySelector('#story-reader article.page-text[data-page="1"]:not(.pending)');
    if (captions.includes('Page 1') && text) window.seen.firstPage = Date.now();
  };
  new MutationObserver(look).observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true});
}"""


def one_book(page, pages: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Make one book in the open studio; seconds from the click to page 1 visible, every page ready, bound."""
    page.locator("#pages-input input").fill(str(pages))
    page.locator("#pages-input input").press("Tab")
    page.evaluate(WATCH)
    page.locator("#generate-button").click()
    page.wait_for_function("() => window.seen.done !== null", timeout=1_800_000)
    seen = page.evaluate("() => window.seen")
    return {name: (seen[key] - seen["clicked"]) / 1000 for name, key in (("first_page", "firstPage"), ("all_pages_ready", "ready"), ("book", "done"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="offline")
    parser.add_argument("--pages", type=int, default=8)
    parser.add_argument("--books", type=int, default=3)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder, running_studio(args.profile, Path(folder), timeout_s=900) as url:
        print(f"fabula up's log: {Path(folder) / 'fabula-up.log'} (kept while it runs)", flush=True)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(url + "/")
            page.locator("#photo-input input[type=file]").set_input_files(str(PHOTO))
            page.wait_for_selector("#photo-input img")
            one_book(page, args.pages)  # warm: the first book loads what the services load lazily
            runs = [one_book(page, args.pages) for _ in range(args.books)]
            browser.close()
    print(f"machine: {machine_description()}")
    print(f"profile {args.profile}, {args.pages} pages, {args.books} books after one warm-up book (seconds from the click):")
    for name in ("first_page", "all_pages_ready", "book"):
        values = [run[name] for run in runs]
        print(f"  {name:16s} " + "  ".join(f"{value:6.1f}" for value in values) + f"   median {statistics.median(values):.1f}")


if __name__ == "__main__":
    main()
