"""The EPUB 3: valid by epubcheck, read-along by Media Overlays, right to left, fonts, and text that tries to break it.

Narration is spoken by the real espeak-ng, joined and encoded by the real ffmpeg; each book is checked by the
real epubcheck once (three runs in all), and every other assertion reads the same files.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import xml.etree.ElementTree as ElementTree
import zipfile
from dataclasses import dataclass
from datetime import datetime, UTC
from pathlib import Path

import pytest
from fontTools.ttLib import TTFont
from PIL import Image, ImageDraw

from tests.conftest import epubcheck_command
from webapp.book.audio import encode, join_clips, probe_duration, wav_duration
from webapp.book.content import BookBrand, BookContent, BookPage
from webapp.book.epub import render_epub
from webapp.book.narration import PageNarration, SpokenSentence
from webapp.book.scripts import clean_text
from webapp.book.sentences import split_sentences

NS = {"x": "http://www.w3.org/1999/xhtml", "opf": "http://www.idpf.org/2007/opf", "smil": "http://www.w3.org/ns/SMIL",
      "dc": "http://purl.org/dc/elements/1.1/"}
DOWNLOAD_URL = "http://127.0.0.1:7860/books/Qm9va1Rva2VuLXRoYXQtaXMtNDMtY2hhcnMtbG9uZw.pdf"
MODIFIED = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
HOSTILE = 'Tom wrote <script>alert("x")</script> & ]]> \'quoted\' \u202eevil\u202c\x07 here.'


pytestmark = pytest.mark.skipif(not (epubcheck_command() and shutil.which("espeak-ng") and shutil.which("ffmpeg")),
                                reason="needs epubcheck, espeak-ng and ffmpeg (apt-get install epubcheck espeak-ng ffmpeg)")


def png(color: tuple[int, int, int]) -> bytes:
    image = Image.new("RGB", (80, 60), color)
    ImageDraw.Draw(image).ellipse((20, 10, 60, 50), fill=(250, 220, 120))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def speak(text: str, voice: str) -> bytes:
    return subprocess.run(["espeak-ng", "--stdout", "-v", voice, text], check=True, capture_output=True).stdout


def narrate(number: int, text: str, language: str, voice: str, store: dict[str, bytes]) -> PageNarration:
    """What the pipeline does for a page: a clip per sentence, joined, encoded as MP3, the timings kept."""
    sentences = split_sentences(text, language)
    joined, timings = join_clips([speak(sentence, voice) for sentence in sentences])
    name = f"narration/page-{number}.mp3"
    store[name] = encode(joined, "mp3")
    return PageNarration(page=number, audio_name=name, duration=wav_duration(joined), voice=f"espeak-ng {voice}",
                         sentences=[SpokenSentence(text=sentence, begin=begin, end=end)
                                    for sentence, (begin, end) in zip(sentences, timings, strict=True)])


@dataclass
class CheckedBook:
    content: BookContent
    narrations: dict[int, PageNarration]
    audio: dict[str, bytes]
    path: Path
    epubcheck_rc: int
    epubcheck_output: str

    def read(self, name: str) -> bytes:
        with zipfile.ZipFile(self.path) as archive:
            return archive.read(f"EPUB/{name}")

    def xml(self, name: str) -> ElementTree.Element:
        return ElementTree.fromstring(self.read(name))

    def names(self) -> list[str]:
        with zipfile.ZipFile(self.path) as archive:
            return archive.namelist()


def check(tmp_path: Path, name: str, content: BookContent, narrations: dict[int, PageNarration],
          audio: dict[str, bytes]) -> CheckedBook:
    path = tmp_path / f"{name}.epub"
    path.write_bytes(render_epub(content, narrations, audio.__getitem__, identifier=f"book-{name}", modified=MODIFIED))
    result = subprocess.run([*epubcheck_command(), str(path)], capture_output=True, text=True, timeout=300)
    return CheckedBook(content, narrations, audio, path, result.returncode, result.stdout + result.stderr)


@pytest.fixture(scope="module")
def english(tmp_path_factory: pytest.TempPathFactory) -> CheckedBook:
    texts = ["Maya found a small cat in the garden. It was hungry!", HOSTILE, "Dr. Lee smiled. The cat purred all night."]
    content = BookContent(
        title='Maya & the <Cat> "]]>"', language="en", subject="A girl & a cat", cover_png=png((30, 60, 120)),
        pages=[BookPage(number=number, text=text, image_png=png((90, 140, 200))) for number, text in enumerate(texts, 1)],
        download_url=DOWNLOAD_URL,
        brand=BookBrand(name="Acme <b>Books</b>", message="Thank you & <i>good night</i>!", logo_png=png((0, 170, 60)),
                        cta_url="https://acme.example/more?a=1&b=2", cta_text="More \"stories\" at Acme"),
    )
    store: dict[str, bytes] = {}
    narrations = {0: narrate(0, "Maya and the Cat.", "en", "en", store)}
    narrations[0] = narrations[0].model_copy(update={"sentences": [SpokenSentence(text=content.title, begin=0.0,
                                                                                  end=narrations[0].duration)]})
    narrations |= {page.number: narrate(page.number, page.text, "en", "en", store) for page in content.pages}
    return check(tmp_path_factory.mktemp("english"), "english", content, narrations, store)


@pytest.fixture(scope="module")
def arabic(tmp_path_factory: pytest.TempPathFactory) -> CheckedBook:
    texts = ["وجدت مايا قطة صغيرة في الحديقة. كانت القطة جائعة!", "تقاسما شطيرة. هل كانت لذيذة؟"]
    content = BookContent(
        title="مايا والقطة", language="ar", cover_png=png((120, 30, 60)), original_title="Maya and the Cat",
        pages=[BookPage(number=number, text=text, image_png=png((90, 140, 200))) for number, text in enumerate(texts, 1)],
        download_url=DOWNLOAD_URL, original_texts=["Maya found a small cat in the garden. It was hungry!",
                                                   "They shared a sandwich. Was it tasty?"],
    )
    store: dict[str, bytes] = {}
    narrations = {page.number: narrate(page.number, page.text, "ar", "ar", store) for page in content.pages}
    return check(tmp_path_factory.mktemp("arabic"), "arabic", content, narrations, store)


@pytest.fixture(scope="module")
def silent(tmp_path_factory: pytest.TempPathFactory) -> CheckedBook:
    content = BookContent(title="猫の本", language="ja", download_url=DOWNLOAD_URL,
                          pages=[BookPage(number=1, text="猫が庭にいた。「こんにちは！」と言った。"),
                                 BookPage(number=2, text="おしまい。", image_png=png((10, 200, 10)))])
    return check(tmp_path_factory.mktemp("silent"), "silent", content, {}, {})


def assert_valid(book: CheckedBook) -> None:
    assert book.epubcheck_rc == 0, book.epubcheck_output
    assert not re.search(r"\b(ERROR|FATAL)\b", book.epubcheck_output), book.epubcheck_output
    assert not re.search(r"\bWARNING\b", book.epubcheck_output), book.epubcheck_output
    assert "0 fatals / 0 errors / 0 warnings" in book.epubcheck_output


def seconds(clock: str) -> float:
    hours, minutes, rest = clock.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(rest)


def overlay_durations(book: CheckedBook) -> tuple[float | None, dict[str, float]]:
    metadata = book.xml("package.opf").find("opf:metadata", NS)
    total, per_overlay = None, {}
    for meta in metadata.findall("opf:meta[@property='media:duration']", NS):
        if meta.get("refines"):
            per_overlay[meta.get("refines").lstrip("#")] = seconds(meta.text)
        else:
            total = seconds(meta.text)
    return total, per_overlay


def span_texts(book: CheckedBook, document: str) -> dict[str, str]:
    root = book.xml(document)
    return {span.get("id"): "".join(span.itertext()) for span in root.iter(f"{{{NS['x']}}}span")}


@pytest.mark.parametrize("name", ["english", "arabic", "silent"])
def test_every_book_passes_epubcheck(name: str, request: pytest.FixtureRequest) -> None:
    assert_valid(request.getfixturevalue(name))


@pytest.mark.parametrize("name", ["english", "arabic"])
def test_each_overlay_pairs_every_sentence_with_its_clip(name: str, request: pytest.FixtureRequest) -> None:
    book: CheckedBook = request.getfixturevalue(name)
    total, per_overlay = overlay_durations(book)
    expected_pages = sorted(book.narrations)
    assert sorted(per_overlay) == sorted("mo-cover" if page == 0 else f"mo-page-{page:02d}" for page in expected_pages)
    for page in expected_pages:
        stem = "cover" if page == 0 else f"page-{page:02d}"
        narration = book.narrations[page]
        pars = book.xml(f"{stem}.smil").findall(".//smil:par", NS)
        spans = span_texts(book, f"{stem}.xhtml")
        assert len(pars) == len(narration.sentences)
        clip_sum = 0.0
        for number, (par, sentence) in enumerate(zip(pars, narration.sentences, strict=True), start=1):
            text, clip = par.find("smil:text", NS), par.find("smil:audio", NS)
            assert text.get("src") == f"{stem}.xhtml#s{page}-{number}"
            assert spans[f"s{page}-{number}"].split() == clean_text(sentence.text).split()
            assert clip.get("src") == f"audio/{stem}.mp3"
            begin, end = seconds(clip.get("clipBegin")), seconds(clip.get("clipEnd"))
            assert begin == pytest.approx(sentence.begin, abs=0.0011) and end == pytest.approx(sentence.end, abs=0.0011)
            clip_sum += end - begin
        assert per_overlay[f"mo-{stem}"] == pytest.approx(clip_sum, abs=0.002)
        audio = book.read(f"audio/{stem}.mp3")
        assert audio == book.audio[narration.audio_name]
        assert probe_duration(audio) >= seconds(pars[-1].find("smil:audio", NS).get("clipEnd")) - 0.01
    assert total == pytest.approx(sum(per_overlay.values()), abs=0.002)


def test_package_metadata_and_manifest(english: CheckedBook) -> None:
    package = english.xml("package.opf")
    metadata = package.find("opf:metadata", NS)
    assert re.fullmatch(r"urn:uuid:[0-9a-f-]{36}", metadata.find("dc:identifier", NS).text)
    assert metadata.find("dc:title", NS).text == 'Maya & the <Cat> "]]>"'
    assert metadata.find("dc:language", NS).text == "en"
    assert metadata.find("opf:meta[@property='dcterms:modified']", NS).text == "2026-05-01T12:00:00Z"
    assert metadata.find("opf:meta[@property='media:narrator']", NS).text == "espeak-ng en"
    active = metadata.find("opf:meta[@property='media:active-class']", NS).text
    assert f".{active} " in english.read("style.css").decode()
    items = {item.get("id"): item for item in package.iter(f"{{{NS['opf']}}}item")}
    assert items["page-02"].get("media-overlay") == "mo-page-02"
    assert items["mo-page-02"].get("media-type") == "application/smil+xml"
    assert items["audio-page-02"].get("media-type") == "audio/mpeg"
    assert items["cover-image"].get("properties") == "cover-image" and items["nav"].get("properties") == "nav"
    with zipfile.ZipFile(english.path) as archive:
        first = archive.infolist()[0]
        assert (first.filename, first.compress_type, archive.read(first)) == ("mimetype", zipfile.ZIP_STORED,
                                                                               b"application/epub+zip")


def test_hostile_text_ends_as_plain_text(english: CheckedBook) -> None:
    page = english.xml("page-02.xhtml")
    assert not list(page.iter(f"{{{NS['x']}}}script"))
    text = "".join(page.find(".//x:p[@class='text']", NS).itertext())
    assert text == 'Tom wrote <script>alert("x")</script> & ]]> \'quoted\' evil here.'
    assert "\u202e" not in text and "\x07" not in text
    cover = english.xml("cover.xhtml")
    assert "".join(cover.find(".//x:h1", NS).itertext()) == 'Maya & the <Cat> "]]>"'
    end = english.xml("end.xhtml")
    assert "Thank you & <i>good night</i>!" in "".join(end.itertext())
    assert end.find(".//x:a[@class='cta']", NS).get("href") == "https://acme.example/more?a=1&b=2"
    assert end.find(".//x:a[@class='cta']", NS).text == 'More "stories" at Acme'


def test_right_to_left_book_turns_pages_right_to_left_with_its_font(arabic: CheckedBook) -> None:
    spine = arabic.xml("package.opf").find("opf:spine", NS)
    assert spine.get("page-progression-direction") == "rtl"
    for document in ("cover.xhtml", "page-01.xhtml", "end.xhtml", "nav.xhtml"):
        root = arabic.xml(document)
        assert (root.get("dir"), root.get("lang")) == ("rtl", "ar")
    page = arabic.xml("page-01.xhtml")
    assert "".join(page.find(".//x:p[@class='original']", NS).itertext()).startswith("Maya found")
    fonts = [name for name in arabic.names() if name.startswith("EPUB/fonts/")]
    covered = [set(TTFont(io.BytesIO(arabic.read(name.removeprefix("EPUB/")))).getBestCmap()) for name in fonts]
    assert any(ord("م") in cmap and ord("ق") in cmap for cmap in covered)
    assert all(ord("A") not in cmap or ord("م") not in cmap for cmap in covered)  # one face per script


def test_latin_book_embeds_only_latin_faces_cut_to_its_letters(english: CheckedBook) -> None:
    fonts = [name for name in english.names() if name.startswith("EPUB/fonts/")]
    assert fonts and all(name.endswith((".ttf", ".otf")) for name in fonts)
    for name in fonts:
        cmap = set(TTFont(io.BytesIO(english.read(name.removeprefix("EPUB/")))).getBestCmap())
        assert ord("م") not in cmap and ord("ж") not in cmap  # no Arabic, and no letter the book does not use
    assert ord("M") in set(TTFont(io.BytesIO(english.read(fonts[0].removeprefix("EPUB/")))).getBestCmap())


def test_book_without_narration_has_sentence_spans_and_no_overlays(silent: CheckedBook) -> None:
    assert not [name for name in silent.names() if name.endswith((".smil", ".mp3"))]
    package = silent.read("package.opf").decode()
    assert "media-overlay" not in package and "media:duration" not in package
    assert span_texts(silent, "page-01.xhtml") == {"s1-1": "猫が庭にいた。", "s1-2": "「こんにちは！」と言った。"}
    assert silent.xml("package.opf").find("opf:spine", NS).get("page-progression-direction") is None


def test_a_narration_that_does_not_speak_the_page_is_left_out(tmp_path: Path) -> None:
    content = BookContent(title="Two pages", language="en", download_url=DOWNLOAD_URL,
                          pages=[BookPage(number=1, text="The cat slept."), BookPage(number=2, text="The dog ran.")])
    store: dict[str, bytes] = {}
    narrations = {1: narrate(1, "The cat slept.", "en", "en", store), 2: narrate(2, "Something else.", "en", "en", store)}
    epub = render_epub(content, narrations, store.__getitem__, identifier="two", modified=MODIFIED)
    with zipfile.ZipFile(io.BytesIO(epub)) as archive:
        names = archive.namelist()
        package = archive.read("EPUB/package.opf").decode()
    assert "EPUB/page-01.smil" in names and "EPUB/page-02.smil" not in names
    assert 'media-overlay="mo-page-01"' in package and 'media-overlay="mo-page-02"' not in package


def test_the_same_book_gives_the_same_bytes(silent: CheckedBook) -> None:
    first = render_epub(silent.content, {}, silent.audio.__getitem__, identifier="book-silent", modified=MODIFIED)
    assert first == silent.path.read_bytes()
