"""What the studio page shows for a story: gallery captions, the Page dropdown, the book's formats and the QR code,
computed by `webapp.ui.render` from a `StoryContent` whose pictures and book are real files in a temporary folder."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from PIL import Image

from webapp.jobs.reading import PageContent, StoryContent
from webapp.jobs.book_links import BookLinks
from webapp.jobs.models import JobRecord, JobStatus, Stage
from webapp.ui.callbacks import plain_words
from webapp.jobs.page_tally import PageTally
from webapp.ui.render import FEW_COLUMNS, MANY_COLUMNS, PENDING_PICTURE, gallery_items, progress_html, links_html, page_choices, story_screen

PUBLIC_URL = "http://192.168.1.20:8000"
TOKEN = "x" * 43


def _picture(path: Path, colour: tuple[int, int, int]) -> Path:
    Image.new("RGB", (32, 32), colour).save(path)
    return path


def _story(
    folder: Path, pages: int, *, status: JobStatus = JobStatus.done, replaced: tuple[int, ...] = (), epub: bool = True,
    audiobook: bool = True, narration_note: str | None = None,
) -> StoryContent:
    """A story of `pages` painted pages, bound when done: pictures and the PDF are real files in `folder`."""
    now = time.time()
    record = JobRecord(
        id="job-1", status=status, stage=Stage.done if status == JobStatus.done else Stage.illustrate, options={"language": "en"},
        created_at=now, updated_at=now, pages_total=pages, pages_done=pages, book_token=TOKEN if status == JobStatus.done else None,
    )
    content = StoryContent(record=record, title="The Cat Who Flew", original_title="The Cat Who Flew")
    content.cover_path = _picture(folder / "cover.png", (200, 80, 40))
    for number in range(1, pages + 1):
        image = _picture(folder / f"page-{number:02d}.png", (number * 10 % 255, 120, 200))
        content.pages.append(PageContent(number, f"Text of page {number}.", f"Text of page {number}.", image, replaced=number in replaced))
    if status == JobStatus.done:
        content.book_path = folder / "book.pdf"
        Image.new("RGB", (64, 64), "white").save(content.book_path)
        links = BookLinks(PUBLIC_URL, TOKEN)
        content.book_link, content.reader_link = links.pdf, links.reader
        content.epub_link = links.epub if epub else None
        content.audiobook_link = links.audiobook if audiobook else None
        content.narration_note = narration_note
    return content


@pytest.mark.parametrize("pages", [1, 4, 6, 24])
def test_gallery_labels_the_cover_and_every_page(tmp_path: Path, pages: int) -> None:
    screen = story_screen(_story(tmp_path, pages), ["job-1"], {})

    captions = [caption for _, caption in screen.gallery["value"]]
    assert captions == ["Cover"] + [f"Page {number}" for number in range(1, pages + 1)]
    assert screen.gallery["columns"] == (FEW_COLUMNS if pages + 1 <= 2 * FEW_COLUMNS else MANY_COLUMNS)
    assert all(Path(picture).is_file() for picture, _ in screen.gallery["value"])


def test_gallery_keeps_every_page_in_its_place_while_the_pictures_arrive(tmp_path: Path) -> None:
    content = _story(tmp_path, 4, status=JobStatus.running)
    content.cover_path = None
    content.pages[2].image_path = None

    items = gallery_items(content)
    assert [caption for _, caption in items] == ["Cover · being painted", "Page 1", "Page 2", "Page 3 · being painted", "Page 4"]
    assert items[0][0] == items[3][0] == str(PENDING_PICTURE) and PENDING_PICTURE.is_file()
    assert items[1][0] == str(content.pages[0].image_path)


def test_a_replaced_picture_says_so_in_its_caption(tmp_path: Path) -> None:
    captions = [caption for _, caption in gallery_items(_story(tmp_path, 3, replaced=(2,)))]

    assert captions[0] == "Cover" and captions[1] == "Page 1" and captions[3] == "Page 3"
    assert captions[2].startswith("Page 2 ") and "placeholder" in captions[2]


@pytest.mark.parametrize("pages", [1, 6, 24])
def test_page_dropdown_lists_the_cover_and_every_page_once_the_book_exists(tmp_path: Path, pages: int) -> None:
    screen = story_screen(_story(tmp_path, pages), ["job-1"], {})

    expected = [("Cover", 0)] + [(f"Page {number}", number) for number in range(1, pages + 1)]
    assert page_choices(_story(tmp_path, pages)) == expected
    assert screen.page_choice["choices"] == expected
    assert "value" not in screen.page_choice  # a visitor's own choice is left alone


def test_page_dropdown_keeps_the_page_being_edited(tmp_path: Path) -> None:
    content = _story(tmp_path, 6)

    assert story_screen(content, ["job-1"], {}, chosen_page=5).page_choice["value"] == 5
    assert story_screen(content, ["job-1"], {}, chosen_page=0).page_choice["value"] == 0
    assert "value" not in story_screen(content, ["job-1"], {}, chosen_page=9).page_choice


def test_a_finished_book_links_the_reader_epub_and_audiobook(tmp_path: Path) -> None:
    content = _story(tmp_path, 3)
    links = links_html(content)

    assert f'class="format-link reader-link" href="{PUBLIC_URL}/read/{TOKEN}"' in links and "Read it on a phone" in links
    assert f'href="{PUBLIC_URL}/books/{TOKEN}.epub"' in links and f'href="{PUBLIC_URL}/books/{TOKEN}.m4b"' in links
    assert f'class="share-link" href="{PUBLIC_URL}/read/{TOKEN}"' in links
    assert "narration-note" not in links
    screen = story_screen(content, ["job-1"], {})
    assert screen.link == links and screen.result["visible"] is True
    assert Path(screen.book_file).read_bytes() == content.book_path.read_bytes()


def test_a_book_without_a_voice_says_why_and_offers_no_audiobook(tmp_path: Path) -> None:
    note = "The book is not read aloud: no voice speaks Korean here."
    links = links_html(_story(tmp_path, 2, audiobook=False, narration_note=note))

    assert "audiobook-link" not in links and "epub-link" in links
    assert f'<p class="narration-note">{note}</p>' in links


def test_the_qr_code_opens_the_reader(tmp_path: Path) -> None:
    import cv2
    import numpy as np

    screen = story_screen(_story(tmp_path, 2), ["job-1"], {})
    image = cv2.cvtColor(np.array(screen.qr), cv2.COLOR_RGB2BGR)
    decoded = next((text for detector in (cv2.QRCodeDetector(), cv2.QRCodeDetectorAruco()) if (text := detector.detectAndDecode(image)[0])), "")

    assert decoded == f"{PUBLIC_URL}/read/{TOKEN}"


def test_a_book_being_made_shows_no_links_yet(tmp_path: Path) -> None:
    screen = story_screen(_story(tmp_path, 3, status=JobStatus.running), ["job-1"], {})

    assert screen.link == "" and screen.qr is None and screen.book_file is None and screen.result["visible"] is False
    assert screen.page_choice["choices"][0] == ("Cover", 0)


def test_upload_errors_read_as_plain_words() -> None:
    assert plain_words("The uploaded file `photo` is not an image Fabula can read. Use a JPEG, PNG, WebP or GIF photo.") == (
        "The uploaded photo is not an image Fabula can read. Use a JPEG, PNG, WebP or GIF photo."
    )
    assert plain_words("The image format BMP of `logo` is not supported.") == "The image format BMP of the logo is not supported."
    assert "`" not in plain_words("Run `fabula models pull cpu` first.")


def _chips(html_text: str) -> list[tuple[str, str]]:
    import re

    return re.findall(r'<li class="step (\w+)">([^<]*)</li>', html_text)


def test_progress_counts_each_kind_of_piece_and_calls_a_page_done_only_when_all_of_it_exists() -> None:
    now = time.time()
    record = JobRecord(
        id="job-1", status=JobStatus.running, stage=Stage.illustrate, options={"language": "de"}, created_at=now, updated_at=now, pages_total=4,
    )
    tally = PageTally(total=4, written=2, painted=3, read_aloud=1, ready=1, cover=True)

    shown = progress_html(record, tally, "Page 3 painted.")

    assert _chips(shown) == [
        ("done", "Looking at the photo"), ("current", "Writing 2/4"), ("current", "Painting 3/4"), ("current", "Reading aloud 1/4"),
        ("todo", "Binding the book"),
    ]
    assert "Page 3 painted. 1 of 4 pages ready." in shown and 'data-pages-done="1"' in shown
    assert 'aria-valuenow="50"' in shown  # 6 of the 12 pieces: half of the pages' stretch of the bar


def test_progress_of_a_stopped_book_marks_what_was_under_way_and_a_finished_one_marks_all_done() -> None:
    now = time.time()
    stopped = JobRecord(
        id="job-1", status=JobStatus.failed, stage=Stage.illustrate, options={"narrate": False}, created_at=now, updated_at=now, pages_total=2,
        error="Cancelled: the finished pages are kept; Resume goes on.",
    )
    tally = PageTally(total=2, written=2, painted=1, ready=1, cover=True, narrated=False)
    assert _chips(progress_html(stopped, tally)) == [
        ("done", "Looking at the photo"), ("done", "Writing 2/2"), ("stopped", "Painting 1/2"), ("todo", "Binding the book"),
    ]
    done = stopped.model_copy(update={"status": JobStatus.done, "stage": Stage.done, "error": None})
    assert all(state == "done" for state, _ in _chips(progress_html(done, PageTally(total=2, written=2, painted=2, ready=2, cover=True))))
