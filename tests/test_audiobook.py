"""Narration audio and the audiobook, with real espeak-ng voices and the real ffmpeg/ffprobe."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from webapp.book.audio import AudioError, InvalidAudio, encode, join_clips, probe_duration, transcode, wav_duration
from webapp.book.audiobook import metadata_value, render_audiobook

pytestmark = pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("ffmpeg") and shutil.which("ffprobe")),
                                reason="needs espeak-ng and ffmpeg (apt-get install espeak-ng ffmpeg)")


def speak(text: str, voice: str = "en") -> bytes:
    return subprocess.run(["espeak-ng", "--stdout", "-v", voice, text], check=True, capture_output=True).stdout


def ffprobe(path: Path) -> dict:
    result = subprocess.run(["ffprobe", "-v", "error", "-show_chapters", "-show_format", "-show_streams", "-of", "json",
                             str(path)], check=True, capture_output=True, text=True)
    return json.loads(result.stdout)


def cover_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (120, 120), (200, 60, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_wav_duration_counts_the_samples_of_a_streamed_wav() -> None:
    clip = speak("The cat purred all night.")
    samples = len(clip) - 44  # espeak-ng writes a 44-byte header and 16-bit mono samples
    assert wav_duration(clip) == pytest.approx(samples / 2 / 22050, abs=1e-6)


def test_join_clips_brings_rates_together_and_times_each_clip() -> None:
    first, second = speak("Maya found a cat."), speak("They shared a sandwich.")
    second_44k_stereo = transcode(second, "wav", extra=("-ar", "44100", "-ac", "2"))
    joined, timings = join_clips([first, second_44k_stereo], gap_s=0.5)
    assert timings[0] == (0.0, pytest.approx(wav_duration(first), abs=1e-4))
    assert timings[1][0] == pytest.approx(timings[0][1] + 0.5, abs=1e-4)
    assert timings[1][1] - timings[1][0] == pytest.approx(wav_duration(second), abs=2e-3)
    assert wav_duration(joined) == pytest.approx(timings[1][1], abs=1e-6)
    assert probe_duration(joined) == pytest.approx(timings[1][1], abs=1e-3)


@pytest.mark.parametrize("audio_format", ["mp3", "m4a"])
def test_encode_keeps_the_length_of_the_clip(audio_format: str) -> None:
    clip = speak("Once upon a time there was a small cat.")
    encoded = encode(clip, audio_format)
    assert encoded[:3] == b"ID3" or encoded[4:8] == b"ftyp" or encoded[:2] == b"\xff\xfb"
    assert probe_duration(encoded) == pytest.approx(wav_duration(clip), abs=0.08)


def test_bytes_that_are_not_a_wav_are_refused_in_plain_words() -> None:
    with pytest.raises(InvalidAudio, match="not a PCM WAV"):
        wav_duration(b"<html>not audio</html>")
    with pytest.raises(ValueError, match="at least one"):
        join_clips([])


def test_missing_ffmpeg_names_the_package_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clip = speak("Hello.")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(AudioError, match="apt-get install ffmpeg"):
        encode(clip, "mp3")


def test_metadata_values_escape_the_ffmetadata_special_characters() -> None:
    assert metadata_value("A=B; #1 \\ x\nnext") == "A\\=B\\; \\#1 \\\\ x next"


def test_audiobook_has_a_chapter_per_page_tags_and_cover(tmp_path: Path) -> None:
    pages = ["Maya and the Cat.", "Maya found a small cat in the garden.", "They shared a sandwich. It was good."]
    clips = [speak(text) for text in pages]
    chapters = [("Title", encode(clips[0], "mp3")), ("Page 1", clips[1]), ("Page 2 = #2; end", encode(clips[2], "mp3"))]
    path = tmp_path / "book.m4b"
    path.write_bytes(render_audiobook("Maya & the Cat", "Fabula", "en", chapters, cover_png()))

    info = ffprobe(path)
    found = info["chapters"]
    assert [chapter["tags"]["title"] for chapter in found] == ["Title", "Page 1", "Page 2 = #2; end"]
    starts = [float(chapter["start_time"]) for chapter in found]
    assert starts[0] == 0.0 and starts == sorted(starts) and len(set(starts)) == 3
    for chapter, clip in zip(found, clips, strict=True):
        length = float(chapter["end_time"]) - float(chapter["start_time"])
        assert length == pytest.approx(wav_duration(clip), abs=0.08)
    total = sum(wav_duration(clip) for clip in clips)
    assert float(info["format"]["duration"]) == pytest.approx(total, abs=0.15)
    assert float(found[-1]["end_time"]) == pytest.approx(float(info["format"]["duration"]), abs=0.05)

    tags = info["format"]["tags"]
    assert (tags["title"], tags["artist"], tags["major_brand"].strip()) == ("Maya & the Cat", "Fabula", "M4B")
    audio = next(stream for stream in info["streams"] if stream["codec_type"] == "audio")
    assert audio["codec_name"] == "aac" and audio["tags"]["language"] == "eng"
    pictures = [stream for stream in info["streams"] if stream["disposition"].get("attached_pic") == 1]
    assert len(pictures) == 1 and pictures[0]["codec_name"] == "png"


def test_audiobook_without_cover_in_arabic(tmp_path: Path) -> None:
    chapters = [("الصفحة 1", speak("وجدت مايا قطة صغيرة.", "ar")), ("الصفحة 2", speak("تقاسما شطيرة.", "ar"))]
    path = tmp_path / "book.m4b"
    path.write_bytes(render_audiobook("مايا والقطة", "Fabula", "ar", chapters, None))
    info = ffprobe(path)
    assert [chapter["tags"]["title"] for chapter in info["chapters"]] == ["الصفحة 1", "الصفحة 2"]
    assert next(stream for stream in info["streams"] if stream["codec_type"] == "audio")["tags"]["language"] == "ara"
    assert not any(stream["disposition"].get("attached_pic") for stream in info["streams"])


def test_audiobook_names_the_chapter_whose_audio_is_broken() -> None:
    with pytest.raises(InvalidAudio, match="Chapter 2") as caught:
        render_audiobook("T", "A", "en", [("Page 1", speak("Hello.")), ("Page 2", b"ID3 not really an mp3")], None)
    assert caught.value.param == "chapters[1]"
