"""The phone reader in headless Chromium at a phone's size: a reader taps play, hears page 1 (espeak-ng narration,
MP3 from ffmpeg) with each sentence highlighted in turn, is carried to page 2 when page 1 ends, pauses with the
space bar, turns pages by button, arrow key and swipe; an Arabic book reads right to left. Screenshots of each
step are saved under the test's tmp_path."""

from __future__ import annotations

import io
import shutil
import subprocess
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from PIL import Image, ImageDraw

from shared.server_thread import ServerThread
from webapp.book.narration import SpokenSentence
from webapp.reader import ReaderBook, ReaderPage, reader_router

if TYPE_CHECKING:  # Playwright is imported inside the tests, which skip without a browser
    from playwright.sync_api import Browser, ConsoleMessage, Page, Response

pytestmark = pytest.mark.browser

PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}
ENGLISH_TOKEN = "EnglishBook_" * 3 + "0123456"
ARABIC_TOKEN = "ArabicBook__" * 3 + "0123456"
GAP_SECONDS = 0.35
WAIT_MS = 30_000

ENGLISH_PAGES = [
    ["Mira found a red kite.", "It tugged at her hand."],
    ["The wind carried them up the hill.", "The grass sang below."],
    ["At sunset they drifted home.", "The kite slept by the door.", "Good night, Mira."],
]
ARABIC_PAGES = [
    ["وجدت ميرا طائرة ورقية حمراء.", "شدّت الطائرة يدها برفق."],
    ["حملتهما الريح إلى أعلى التل."],
    ["عادتا إلى البيت عند الغروب."],
]
PALETTES = [((255, 214, 170), (255, 140, 90)), ((170, 220, 255), (80, 150, 220)), ((210, 190, 255), (120, 90, 200)),
            ((190, 240, 200), (70, 160, 110))]


@dataclass(frozen=True)
class Clip:
    """Mono 16-bit PCM as espeak-ng speaks it."""

    frames: bytes
    rate: int
    width: int
    channels: int

    @property
    def bytes_per_second(self) -> int:
        return self.rate * self.width * self.channels

    def silence(self, seconds: float) -> bytes:
        return b"\x00" * (int(seconds * self.rate) * self.width * self.channels)


def _speak(sentence: str, voice: str) -> Clip:
    """espeak-ng's WAV on stdout has placeholder sizes (it streams), so the frames are read up to the real end."""
    result = subprocess.run(["espeak-ng", "-v", voice, "--stdout", sentence], capture_output=True, check=True)
    with wave.open(io.BytesIO(result.stdout)) as clip:
        params = clip.getparams()
        return Clip(clip.readframes(params.nframes), params.framerate, params.sampwidth, params.nchannels)


def _narrate(sentences: list[str], voice: str, target: Path) -> list[SpokenSentence]:
    """One MP3 per page: the sentences' clips joined with a short silence; times from each clip's length."""
    clips = [_speak(sentence, voice) for sentence in sentences]
    pcm = bytearray()
    timed = []
    for index, (sentence, clip) in enumerate(zip(sentences, clips, strict=True)):
        if index:
            pcm += clip.silence(GAP_SECONDS)
        begin = len(pcm) / clip.bytes_per_second
        pcm += clip.frames
        timed.append(SpokenSentence(text=sentence, begin=round(begin, 3), end=round(len(pcm) / clip.bytes_per_second, 3)))
    joined = target.with_suffix(".wav")
    with wave.open(str(joined), "wb") as out:
        out.setnchannels(clips[0].channels)
        out.setsampwidth(clips[0].width)
        out.setframerate(clips[0].rate)
        out.writeframes(bytes(pcm))
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(joined), "-codec:a", "libmp3lame", "-b:a", "64k", str(target)],
                   check=True)
    return timed


def _picture(target: Path, palette: int, label: str) -> None:
    """A small painted scene (sky, sun, hill, kite) so a screenshot shows how a real picture sits on the page."""
    top, bottom = PALETTES[palette % len(PALETTES)]
    image = Image.new("RGB", (768, 768))
    draw = ImageDraw.Draw(image)
    for y in range(768):
        mix = y / 767
        draw.line([(0, y), (767, y)], fill=tuple(round(a + (b - a) * mix) for a, b in zip(top, bottom, strict=True)))
    draw.ellipse((520, 90, 660, 230), fill=(255, 236, 140))
    draw.ellipse((-200, 520, 980, 1200), fill=(96, 170, 96))
    draw.polygon([(250, 180), (320, 260), (250, 340), (180, 260)], fill=(220, 40, 50))
    draw.line([(250, 340), (380, 600)], fill=(60, 60, 60), width=4)
    draw.text((24, 24), label, fill=(40, 30, 20))
    image.save(target)


def _book(token: str, title: str, language: str, voice: str, pages: list[list[str]], narrated: int, media: Path) -> ReaderBook:
    _picture(media / f"{token}-cover.png", 3, title)
    reader_pages = []
    for index, sentences in enumerate(pages):
        number = index + 1
        _picture(media / f"{token}-{number}.png", index, f"{number}")
        audio_url, timed = None, []
        if index < narrated:
            timed = _narrate(sentences, voice, media / f"{token}-{number}.mp3")
            audio_url = f"/media/{token}-{number}.mp3"
        reader_pages.append(ReaderPage(number=number, text=" ".join(sentences), image_url=f"/media/{token}-{number}.png",
                                       audio_url=audio_url, sentences=timed))
    return ReaderBook(token=token, title=title, language=language, author="Ana", cover_url=f"/media/{token}-cover.png",
                      pages=reader_pages, pdf_url=f"/media/{token}.pdf", epub_url=f"/media/{token}.epub")


@pytest.fixture(scope="module")
def reader_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    for program in ("espeak-ng", "ffmpeg"):
        if shutil.which(program) is None:
            pytest.skip(f"{program} is not installed")
    media = tmp_path_factory.mktemp("reader-media")
    books = {
        ENGLISH_TOKEN: _book(ENGLISH_TOKEN, "Mira and the Red Kite", "en", "en", ENGLISH_PAGES, 3, media),
        ARABIC_TOKEN: _book(ARABIC_TOKEN, "ميرا والطائرة الحمراء", "ar", "ar", ARABIC_PAGES, 1, media),
    }
    for token in books:
        (media / f"{token}.pdf").write_bytes(b"%PDF-1.4\n%%EOF\n")
        (media / f"{token}.epub").write_bytes(b"PK")
    app = FastAPI()
    app.include_router(reader_router(books.get))
    app.mount("/media", StaticFiles(directory=media), name="media")
    with ServerThread(app) as server:
        yield server.url


class Problems:
    """Console errors, uncaught exceptions and failed or refused requests seen by a page."""

    def __init__(self, page: Page) -> None:
        self.seen: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.seen.append(f"page error: {error}"))
        page.on("requestfailed", lambda request: self.seen.append(f"failed: {request.url} {request.failure}"))
        page.on("response", self._response)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.seen.append(f"console: {message.text}")

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self.seen.append(f"{response.status}: {response.url}")


def _current_slide(page: Page) -> str:
    return page.evaluate("document.querySelector('[data-slide]:not([hidden])').id")


def _swipe(page: Page, from_x: int, to_x: int, y: int = 420) -> None:
    """A real touch stroke through the DevTools protocol: Chromium turns it into pointer events, as on a phone."""
    session = page.context.new_cdp_session(page)
    session.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": from_x, "y": y}]})
    for step in range(1, 6):
        x = from_x + (to_x - from_x) * step / 5
        session.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
    session.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    session.detach()


def test_reader_reads_aloud_highlights_and_turns_pages_on_a_phone(reader_url: str, browser: Browser, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(**PHONE)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    problems = Problems(page)

    def shot(name: str) -> None:
        page.screenshot(path=str(tmp_path / f"{name}.png"), animations="disabled")

    page.goto(f"{reader_url}/read/{ENGLISH_TOKEN}")
    expect(page.locator("#cover")).to_be_visible()
    expect(page.locator("#page-1")).to_be_hidden()
    expect(page.get_by_role("link", name="PDF")).to_be_visible()
    expect(page.get_by_role("link", name="EPUB")).to_be_visible()
    play = page.locator("#play-button")
    expect(play).to_have_attribute("aria-label", "Play")
    shot("01-cover")

    # A tap on play opens page 1 and reads it: the clip's clock runs and the first sentence is marked.
    play.click()
    expect(page.locator("#page-1")).to_be_visible()
    expect(play).to_have_attribute("aria-label", "Pause")
    page.wait_for_function("() => document.querySelector('#page-1 audio').currentTime > 0.3")
    sentences = page.locator("#page-1 .sentence")
    expect(sentences.nth(0)).to_have_attribute("aria-current", "true")
    expect(sentences.nth(1)).not_to_have_attribute("aria-current", "true")
    shot("02-page-1-first-sentence")

    # Past the second sentence's start the mark moves on.
    expect(sentences.nth(1)).to_have_attribute("aria-current", "true")
    expect(sentences.nth(0)).not_to_have_attribute("aria-current", "true")
    second_begin = float(sentences.nth(1).get_attribute("data-begin") or 0)
    assert page.evaluate("document.querySelector('#page-1 audio').currentTime") >= second_begin
    shot("03-page-1-second-sentence")

    # When page 1's clip ends the reader turns to page 2 and keeps reading.
    expect(page.locator("#page-2")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#announcer")).to_have_text("Page 2 of 3")
    page.wait_for_function("() => document.querySelector('#page-2 audio').currentTime > 0.2")
    assert page.evaluate("document.querySelector('#page-1 audio').paused")
    assert page.locator("#page-2 audio").get_attribute("preload") == "auto"
    assert page.locator("#page-3 audio").get_attribute("preload") == "none"
    shot("04-page-2-auto-advanced")

    # The space bar pauses.
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.keyboard.press(" ")
    expect(play).to_have_attribute("aria-label", "Play")
    assert page.evaluate("document.querySelector('#page-2 audio').paused")

    # Buttons, arrow keys and swipes turn pages; the ends are closed.
    page.locator("#next-button").click()
    expect(page.locator("#page-3")).to_be_visible()
    expect(page.locator("#announcer")).to_have_text("Page 3 of 3")
    expect(page.locator("#next-button")).to_be_disabled()
    assert page.evaluate("document.querySelector('#page-3 audio').paused")
    shot("05-page-3")
    page.keyboard.press("ArrowLeft")
    assert _current_slide(page) == "page-2"
    page.keyboard.press("ArrowRight")
    assert _current_slide(page) == "page-3"
    page.locator("#previous-button").click()
    page.locator("#previous-button").click()
    assert _current_slide(page) == "page-1"
    _swipe(page, 320, 60)
    expect(page.locator("#page-2")).to_be_visible()
    _swipe(page, 60, 320)
    expect(page.locator("#page-1")).to_be_visible()
    page.keyboard.press("ArrowLeft")
    expect(page.locator("#cover")).to_be_visible()
    expect(page.locator("#previous-button")).to_be_disabled()

    # Play on page 3 reads it to the end; the last page stops there.
    page.locator("#next-button").click()
    page.locator("#next-button").click()
    page.locator("#next-button").click()
    play.click()
    page.wait_for_function("() => document.querySelector('#page-3 audio').ended", timeout=WAIT_MS)
    expect(play).to_have_attribute("aria-label", "Play")
    assert _current_slide(page) == "page-3"
    expect(page.locator("#page-3 .sentence[aria-current]")).to_have_count(0)

    assert problems.seen == []
    context.close()


def test_arabic_book_reads_right_to_left_and_a_silent_page_still_reads(reader_url: str, browser: Browser, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(**PHONE)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    problems = Problems(page)
    page.goto(f"{reader_url}/read/{ARABIC_TOKEN}")
    assert page.evaluate("[document.documentElement.dir, document.documentElement.lang]") == ["rtl", "ar"]
    next_box = page.locator("#next-button").bounding_box()
    previous_box = page.locator("#previous-button").bounding_box()
    assert next_box and previous_box and next_box["x"] < previous_box["x"]
    expect(page.locator("#play-button")).to_have_attribute("aria-label", "تشغيل")
    page.screenshot(path=str(tmp_path / "11-arabic-cover.png"), animations="disabled")

    # In a right-to-left book ← goes forward.
    page.keyboard.press("ArrowLeft")
    expect(page.locator("#page-1")).to_be_visible()
    expect(page.locator("#announcer")).to_have_text("الصفحة 1 من 3")
    page.locator("#play-button").click()
    expect(page.locator("#page-1 .sentence").nth(0)).to_have_attribute("aria-current", "true")
    page.wait_for_function("() => document.querySelector('#page-1 audio').currentTime > 0.3")
    page.screenshot(path=str(tmp_path / "12-arabic-page-1.png"), animations="disabled")

    # Page 2 has no narration: its words are there, play is off and says why.
    page.locator("#next-button").click()
    expect(page.locator("#page-2")).to_be_visible()
    expect(page.locator("#page-2 .page-text")).to_have_text(ARABIC_PAGES[1][0])
    expect(page.locator("#page-2 .no-audio")).to_be_visible()
    expect(page.locator("#play-button")).to_be_disabled()
    assert page.evaluate("document.querySelector('#page-1 audio').paused")
    page.screenshot(path=str(tmp_path / "13-arabic-silent-page.png"), animations="disabled")
    page.keyboard.press("ArrowRight")
    expect(page.locator("#page-1")).to_be_visible()

    assert problems.seen == []
    context.close()


def test_reader_without_javascript_is_the_whole_book_and_fits_a_desktop(reader_url: str, browser: Browser, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(**PHONE, java_script_enabled=False)
    page = context.new_page()
    problems = Problems(page)
    page.goto(f"{reader_url}/read/{ENGLISH_TOKEN}")
    for number in (1, 2, 3):
        expect(page.locator(f"#page-{number} .page-text")).to_be_visible()
        expect(page.locator(f"#page-{number} audio")).to_have_attribute("controls", "")
    expect(page.locator("#controls")).to_be_hidden()
    page.screenshot(path=str(tmp_path / "21-no-script.png"), full_page=True, animations="disabled")
    assert problems.seen == []
    context.close()

    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    problems = Problems(page)
    page.goto(f"{reader_url}/read/{ENGLISH_TOKEN}#page-2")
    expect(page.locator("#page-2")).to_be_visible()
    picture = page.locator("#page-2 .picture img").bounding_box()
    words = page.locator("#page-2 .page-text").bounding_box()
    assert picture and words and picture["x"] + picture["width"] <= words["x"]
    page.screenshot(path=str(tmp_path / "22-desktop.png"), animations="disabled")
    assert problems.seen == []
    context.close()
