"""`render_epub`: book content and its narration in, an EPUB 3 file out, that reads along as it plays.

The EPUB holds a cover page, one XHTML page per story page (picture, then text with each sentence in its own
`<span>`), a last page (brand and download link), the navigation document, the book's fonts (subsets of the
PDF's faces) and, for each narrated page, its MP3 and a Media Overlay (SMIL) that pairs each sentence span with
its clip, so a reading system highlights the sentence being spoken. A book without narration is an ordinary
EPUB. Right-to-left books turn their pages right to left.

Pure apart from reading fonts and calling `audio` for the narration files (and ffmpeg only when a narration is
not yet MP3 or M4A): the same content, narration and `modified` time give the same bytes.
"""

from __future__ import annotations

import io
import logging
import zipfile
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, UTC

from PIL import Image

from webapp.book.audio import encode, transcode
from webapp.book.content import BookContent
from webapp.book.epub_documents import (
    STYLESHEET,
    DocumentFrame,
    cover_document,
    end_document,
    nav_document,
    page_document,
    stylesheet,
)
from webapp.book.epub_fonts import embedded_fonts
from webapp.book.epub_overlays import Overlay, clips_for, smil_document
from webapp.book.epub_package import CONTAINER_XML, PACKAGE_PATH, ManifestItem, PackageMetadata, package_document
from webapp.book.epub_text import SentenceSpan, page_spans, spans_are_timed
from webapp.book.fonts import FontLibrary, default_font_library
from webapp.book.images import decode_logo, decode_picture
from webapp.book.labels import the_end
from webapp.book.narration import PageNarration
from webapp.book.scripts import clean_text
from webapp.book.text_shaping import is_right_to_left_language
from webapp.book.theme import theme_for

logger = logging.getLogger(__name__)

EPUB_MEDIA_TYPE = "application/epub+zip"
COVER_SIZE = (600, 800)
_IMAGE_TYPES = ((b"\x89PNG\r\n\x1a\n", "image/png", "png"), (b"\xff\xd8\xff", "image/jpeg", "jpg"))
_AUDIO_TYPES = {"mp3": ("audio/mpeg", "mp3"), "m4a": ("audio/mp4", "m4a"), "mp4": ("audio/mp4", "m4a")}


def _image(data: bytes, param: str, *, logo: bool = False) -> tuple[bytes, str, str]:
    """A picture as the EPUB embeds it (PNG and JPEG as they are, anything else as PNG): bytes, type, suffix.

    Raises `shared.errors.InvalidImage` naming `param` when it cannot be decoded.
    """
    picture = decode_logo(data, param) if logo else decode_picture(data, param)
    for magic, media_type, suffix in _IMAGE_TYPES:
        if data.startswith(magic):
            return data, media_type, suffix
    buffer = io.BytesIO()
    picture.image.save(buffer, format="PNG")
    return buffer.getvalue(), "image/png", "png"


def _cover_image(content: BookContent) -> tuple[bytes, str, str]:
    """The cover art, else the first page's picture, else a plain cover in the book's main colour."""
    if content.cover_png:
        return _image(content.cover_png, "cover_png")
    for index, page in enumerate(content.pages):
        if page.image_png:
            return _image(page.image_png, f"pages[{index}].image_png")
    color = theme_for(content.brand).primary
    plain = Image.new("RGB", COVER_SIZE, tuple(round(channel * 255) for channel in color.rgb()))
    buffer = io.BytesIO()
    plain.save(buffer, format="PNG")
    return buffer.getvalue(), "image/png", "png"


def _narration_audio(narration: PageNarration, audio: Callable[[str], bytes]) -> tuple[bytes, str, str]:
    """The page's audio in a core media type (MP3 or AAC in MP4; other formats are encoded to MP3)."""
    data = audio(narration.audio_name)
    audio_format = narration.audio_format.lower()
    if audio_format in _AUDIO_TYPES:
        media_type, suffix = _AUDIO_TYPES[audio_format]
        return data, media_type, suffix
    return (encode(data, "mp3") if audio_format == "wav" else transcode(data, "mp3")), "audio/mpeg", "mp3"


class _Book:
    """The items of one EPUB as they are made, and the overlays that narrate them."""

    def __init__(self, audio: Callable[[str], bytes]) -> None:
        self.audio = audio
        self.items: list[ManifestItem] = []
        self.overlays: list[Overlay] = []
        self.narrators: list[str] = []

    def add(self, item: ManifestItem) -> None:
        self.items.append(item)

    def add_document(self, stem: str, xhtml: str, spans: Sequence[SentenceSpan] | None,
                     narration: PageNarration | None, *, text_root: str = "") -> None:
        """A content document in the spine, with its overlay, SMIL and audio when its sentences are timed."""
        overlay_id = ""
        if narration is not None and spans and spans_are_timed(spans):
            data, media_type, suffix = _narration_audio(narration, self.audio)
            audio_href = f"audio/{stem}.{suffix}"
            overlay = Overlay(f"mo-{stem}", f"{stem}.smil", f"{stem}.xhtml", text_root, audio_href, clips_for(spans))
            self.overlays.append(overlay)
            self.add(ManifestItem(f"audio-{stem}", audio_href, media_type, data))
            self.add(ManifestItem(overlay.id, overlay.href, "application/smil+xml", smil_document(overlay).encode()))
            overlay_id = overlay.id
            if narration.voice:
                self.narrators.append(narration.voice)
        elif narration is not None:
            logger.warning("the narration of %s does not match its text; that page is not read along", stem)
        self.add(ManifestItem(stem, f"{stem}.xhtml", "application/xhtml+xml", xhtml.encode(),
                              media_overlay=overlay_id, in_spine=True))


def _page_stem(number: int) -> str:
    return f"page-{number:02d}"


def _nav_label(number: int, spans: Sequence[SentenceSpan]) -> str:
    first = spans[0].text if spans else ""
    first = " ".join(first.split())
    return f"{number}. {first[:60]}…" if len(first) > 60 else f"{number}. {first}".strip()


def _zip(files: Sequence[tuple[str, bytes]], moment: datetime) -> bytes:
    """The OCF container: `mimetype` first and stored, then every file compressed, all with the same date."""
    moment = moment.astimezone(UTC) if moment.tzinfo else moment
    stamp = moment.timetuple()[:6]
    stamp = (max(stamp[0], 1980), *stamp[1:])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("mimetype", date_time=stamp)
        info.compress_type = zipfile.ZIP_STORED
        archive.writestr(info, EPUB_MEDIA_TYPE)
        for name, data in files:
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buffer.getvalue()


def render_epub(content: BookContent, narrations: Mapping[int, PageNarration], audio: Callable[[str], bytes], *,
                identifier: str, modified: datetime | None = None, fonts: FontLibrary | None = None) -> bytes:
    """The book as an EPUB 3 file.

    `narrations` maps a page number (0: the title) to its narration; `audio(name)` returns the bytes of a
    narration's `audio_name`. A page whose narration does not speak its text is shown without read-along.
    `identifier` (the book's id; a UUID is used as is) becomes the `urn:uuid:` identifier; `modified` defaults
    to now. Raises `shared.errors.InvalidImage` for a picture that cannot be decoded and
    `webapp.book.audio.AudioError` when a narration needs encoding and ffmpeg is missing.
    """
    modified = modified or datetime.now(UTC)
    library = fonts or default_font_library()
    language = content.language
    frame = DocumentFrame(language, is_right_to_left_language(language))
    brand_name = content.brand.name if content.brand else None
    book = _Book(audio)
    known_pages = {0} | {page.number for page in content.pages}
    for number in sorted(set(narrations) - known_pages):
        logger.warning("a narration is given for page %d, which the book does not have; it is left out", number)

    cover_data, cover_type, cover_suffix = _cover_image(content)
    book.add(ManifestItem("cover-image", f"images/cover.{cover_suffix}", cover_type, cover_data, properties="cover-image"))
    title_narration = narrations.get(0)
    title_spans = page_spans(content.title, language, 0, title_narration.sentences) if title_narration else None
    cover = cover_document(frame, title=content.title, title_spans=title_spans, original_title=content.original_title,
                           author=content.author, image_href=f"images/cover.{cover_suffix}", brand_name=brand_name)
    book.add_document("cover", cover, title_spans, title_narration, text_root="cover")

    originals = content.page_originals
    nav_entries = [("cover.xhtml", content.title)]
    for index, (page, original) in enumerate(zip(content.pages, originals, strict=True)):
        stem = _page_stem(page.number)
        image_href = None
        if page.image_png:
            data, media_type, suffix = _image(page.image_png, f"pages[{index}].image_png")
            image_href = f"images/{stem}.{suffix}"
            book.add(ManifestItem(f"image-{stem}", image_href, media_type, data))
        narration = narrations.get(page.number)
        spans = page_spans(page.text, language, page.number, narration.sentences if narration else None)
        xhtml = page_document(frame, title=content.title, number=page.number, spans=spans, original_text=original,
                              image_href=image_href, brand_name=brand_name)
        book.add_document(stem, xhtml, spans, narration, text_root=f"page-{page.number}")
        nav_entries.append((f"{stem}.xhtml", _nav_label(page.number, spans)))

    logo_href = None
    if content.brand is not None and content.brand.logo_png:
        data, media_type, suffix = _image(content.brand.logo_png, "brand.logo_png", logo=True)
        logo_href = f"images/logo.{suffix}"
        book.add(ManifestItem("image-logo", logo_href, media_type, data))
    ending = the_end(language)
    book.add_document("end", end_document(frame, title=content.title, the_end=ending, download_url=content.download_url,
                                          brand=content.brand, logo_href=logo_href, pictures_note=content.pictures_note), None, None)
    nav_entries.append(("end.xhtml", ending))
    book.add(ManifestItem("nav", "nav.xhtml", "application/xhtml+xml",
                          nav_document(frame, title=content.title, entries=nav_entries).encode(), properties="nav"))

    shown = [content.title, content.original_title or "", content.author, ending, content.download_url, " · 0123456789.…",
             *(page.text for page in content.pages), *(text or "" for text in originals), content.pictures_note or ""]
    if content.brand is not None:
        shown += [content.brand.name, content.brand.message or "", content.brand.cta_text or ""]
    embedded = embedded_fonts([clean_text(text) for text in shown if text], language, library)
    for number, font in enumerate(embedded, start=1):
        book.add(ManifestItem(f"font-{number}", font.href, font.media_type, font.data))
    book.add(ManifestItem("style", STYLESHEET, "text/css", stylesheet(theme_for(content.brand), embedded).encode()))

    metadata = PackageMetadata(title=content.title, language=language, author=content.author, subject=content.subject,
                               identifier=identifier, modified=modified, right_to_left=frame.right_to_left,
                               narrators=tuple(book.narrators))
    package = package_document(metadata, book.items, book.overlays)
    files = [("META-INF/container.xml", CONTAINER_XML.encode()), (PACKAGE_PATH, package.encode())]
    files += [(f"EPUB/{item.href}", item.data) for item in book.items]
    return _zip(files, modified)
