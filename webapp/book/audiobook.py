"""`render_audiobook`: the pages' narration in, one M4B audiobook out (AAC in MP4) with a chapter per page.

Each chapter's audio (MP3 or WAV) is decoded to the same PCM format and joined in Python, so each chapter
starts at an exact sample position; one ffmpeg run then encodes the whole book and writes the chapters (an
FFMETADATA file), the title, author and language tags, and the cover as the attached picture.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

from webapp.book.audio import AudioError, InvalidAudio, PcmClip, program, read_wav, run_tool, transcode
from webapp.book.scripts import clean_text
from webapp.book.text_shaping import primary_language

logger = logging.getLogger(__name__)

SAMPLE_RATE = 44_100
AAC_BITRATE = "96k"
# MP4 stores a track's language as an ISO 639-2/T code.
ISO_639_2 = {
    "en": "eng", "es": "spa", "fr": "fra", "de": "deu", "it": "ita", "pt": "por", "nl": "nld", "sv": "swe",
    "no": "nor", "nb": "nob", "da": "dan", "fi": "fin", "is": "isl", "pl": "pol", "cs": "ces", "sk": "slk",
    "hu": "hun", "ro": "ron", "hr": "hrv", "sl": "slv", "lt": "lit", "lv": "lav", "et": "est", "ga": "gle",
    "ca": "cat", "eu": "eus", "tr": "tur", "el": "ell", "ru": "rus", "uk": "ukr", "bg": "bul", "sr": "srp",
    "ar": "ara", "he": "heb", "fa": "fas", "ur": "urd", "hi": "hin", "mr": "mar", "ne": "nep", "bn": "ben",
    "ta": "tam", "th": "tha", "vi": "vie", "id": "ind", "ms": "msa", "tl": "fil", "fil": "fil", "sw": "swa",
    "zh": "zho", "ja": "jpn", "ko": "kor",
}


def iso_639_2(language: str) -> str:
    """The three-letter code MP4 wants for a BCP-47 tag ("und" when unknown)."""
    primary = primary_language(language)
    if primary in ISO_639_2:
        return ISO_639_2[primary]
    return primary if len(primary) == 3 and primary.isalpha() else "und"


def metadata_value(text: str) -> str:
    """`text` as an FFMETADATA value: one line, with `=`, `;`, `#` and backslash escaped."""
    text = " ".join(clean_text(text).split())
    for char in ("\\", "=", ";", "#"):
        text = text.replace(char, "\\" + char)
    return text


def ffmetadata(title: str, author: str, chapters: Sequence[tuple[str, int, int]]) -> str:
    """The FFMETADATA1 file: global tags, then one [CHAPTER] per (title, start ms, end ms)."""
    lines = [";FFMETADATA1", f"title={metadata_value(title)}", f"album={metadata_value(title)}",
             f"artist={metadata_value(author)}", f"album_artist={metadata_value(author)}", "genre=Audiobook"]
    for chapter_title, start, end in chapters:
        lines += ["[CHAPTER]", "TIMEBASE=1/1000", f"START={start}", f"END={end}", f"title={metadata_value(chapter_title)}"]
    return "\n".join(lines) + "\n"


def _decoded(audio: bytes, index: int) -> bytes:
    """One chapter as 16-bit mono PCM at `SAMPLE_RATE` (MP3, WAV or anything ffmpeg reads)."""
    if not audio:
        raise InvalidAudio(f"Chapter {index + 1} has no audio (zero bytes); narrate that page again.", param=f"chapters[{index}]")
    try:
        if audio.startswith(b"RIFF"):
            clip = read_wav(audio)
            if clip.channels == 1 and clip.sample_width == 2 and clip.rate == SAMPLE_RATE:
                return clip.frames
            audio = clip.wav()
        return read_wav(transcode(audio, "wav", extra=("-ac", "1", "-ar", str(SAMPLE_RATE)))).frames
    except AudioError as error:
        raise InvalidAudio(f"Chapter {index + 1}'s audio could not be decoded: {error.message}",
                           param=f"chapters[{index}]") from None


def render_audiobook(title: str, author: str, language: str, chapters: list[tuple[str, bytes]],
                     cover_png: bytes | None) -> bytes:
    """The book as an M4B: `chapters` are (chapter title, MP3 or WAV bytes) in order, one chapter each.

    The cover (PNG or JPEG) becomes the attached picture; if ffmpeg refuses it, the audiobook is made without it
    (logged). Raises `InvalidAudio` naming the chapter whose audio cannot be decoded, `AudioError` when ffmpeg
    is missing or fails.
    """
    if not chapters:
        raise ValueError("`chapters` must hold at least one (title, audio) chapter")
    program("ffmpeg")  # a missing ffmpeg is said as such, not as undecodable audio
    parts: list[bytes] = []
    marks: list[tuple[str, int, int]] = []
    position = 0  # in samples
    for index, (chapter_title, audio) in enumerate(chapters):
        frames = _decoded(audio, index)
        samples = len(frames) // 2
        start_ms, end_ms = position * 1000 // SAMPLE_RATE, (position + samples) * 1000 // SAMPLE_RATE
        marks.append((chapter_title, start_ms, max(end_ms, start_ms + 1)))
        parts.append(frames)
        position += samples
    joined = PcmClip(1, 2, SAMPLE_RATE, b"".join(parts)).wav()
    with tempfile.TemporaryDirectory(prefix="fabula-audiobook-") as folder:
        root = Path(folder)
        (root / "book.wav").write_bytes(joined)
        (root / "chapters.txt").write_text(ffmetadata(title, author, marks), encoding="utf-8")
        target = root / "book.m4b"
        base = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(root / "book.wav"), "-i", str(root / "chapters.txt")]
        encoding = ["-map_metadata", "1", "-map_chapters", "1", "-c:a", "aac", "-b:a", AAC_BITRATE,
                    "-metadata:s:a:0", f"language={iso_639_2(language)}", "-brand", "M4B ", "-movflags", "+faststart",
                    "-f", "ipod"]
        if cover_png:
            (root / "cover").write_bytes(cover_png)
            try:
                run_tool([*base, "-i", str(root / "cover"), "-map", "0:a", "-map", "2:v", "-c:v", "copy",
                          "-disposition:v:0", "attached_pic", *encoding, str(target)])
                return target.read_bytes()
            except AudioError as error:
                logger.warning("the cover could not be attached to the audiobook (%s); making it without", error.message)
        run_tool([*base, "-map", "0:a", *encoding, str(target)])
        return target.read_bytes()
