"""Narration audio: measure WAV clips, join a page's sentence clips with their timings, encode, probe.

WAV work is done in Python (the `wave` module); encoding, resampling and probing run the `ffmpeg` and `ffprobe`
programs (Debian package `ffmpeg`) without a shell, with a time limit, on files in a temporary folder that is
always removed. A missing program raises `AudioError` saying what to install.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

from shared.errors import FabulaError

FFMPEG_TIMEOUT_S = 120.0
SAMPLE_WIDTH = 2  # joined clips are 16-bit mono PCM
ENCODINGS: dict[str, tuple[str, ...]] = {
    "mp3": ("-c:a", "libmp3lame", "-q:a", "4", "-f", "mp3"),
    "m4a": ("-c:a", "aac", "-b:a", "96k", "-movflags", "+faststart", "-f", "ipod"),
    "aac": ("-c:a", "aac", "-b:a", "96k", "-f", "adts"),
    "wav": ("-c:a", "pcm_s16le", "-f", "wav"),
}
MEDIA_TYPES = {"mp3": "audio/mpeg", "m4a": "audio/mp4", "aac": "audio/aac", "wav": "audio/wav"}


class AudioError(FabulaError):
    """Audio could not be made: a program is missing or failed. The message says what to do."""

    status_code = 500
    error_type = "audio_error"


class InvalidAudio(AudioError):
    """The audio handed in is not what it claims to be (not a WAV, truncated, empty)."""

    status_code = 400
    error_type = "invalid_audio"


def program(name: str) -> str:
    """The path of `ffmpeg` or `ffprobe`; `AudioError` naming the Debian package when it is not installed."""
    path = shutil.which(name)
    if path is None:
        raise AudioError(f"`{name}` is not installed on this machine, so the book's audio cannot be made. "
                         "Install the Debian package `ffmpeg` (apt-get install ffmpeg), or put the program on PATH.")
    return path


def run_tool(arguments: list[str], *, timeout_s: float = FFMPEG_TIMEOUT_S) -> subprocess.CompletedProcess[bytes]:
    """Run ffmpeg/ffprobe (first argument: the program's name); `AudioError` with its last output lines on failure."""
    command = [program(arguments[0]), *arguments[1:]]
    try:
        result = subprocess.run(command, capture_output=True, timeout=timeout_s, check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise AudioError(f"`{arguments[0]}` took longer than {timeout_s:.0f} s and was stopped; "
                         "try a shorter text or raise the time limit.") from None
    if result.returncode != 0:
        detail = result.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise AudioError(f"`{arguments[0]}` failed (exit status {result.returncode}): {' | '.join(detail) or 'no message'}")
    return result


@dataclass(frozen=True)
class PcmClip:
    """The samples of a WAV clip and how to read them."""

    channels: int
    sample_width: int
    rate: int
    frames: bytes

    @property
    def sample_count(self) -> int:
        return len(self.frames) // (self.sample_width * self.channels)

    @property
    def duration(self) -> float:
        return self.sample_count / self.rate

    def wav(self) -> bytes:
        """The clip as a WAV file whose header declares its true length (ffmpeg trusts the declared size)."""
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as writer:
            writer.setnchannels(self.channels)
            writer.setsampwidth(self.sample_width)
            writer.setframerate(self.rate)
            writer.writeframes(self.frames)
        return buffer.getvalue()


def read_wav(wav: bytes) -> PcmClip:
    """The samples of a PCM WAV file; `InvalidAudio` when it is not one.

    Streamed WAVs (`espeak-ng --stdout`, many TTS servers) declare a data size larger than what follows, so the
    length is taken from the bytes actually present.
    """
    try:
        with wave.open(io.BytesIO(wav), "rb") as reader:
            params = reader.getparams()
            frames = reader.readframes(params.nframes)
    except (wave.Error, EOFError) as error:
        raise InvalidAudio(f"The narration clip is not a PCM WAV file ({error}); send WAV bytes (RIFF/WAVE, PCM).") from None
    frame_size = params.sampwidth * params.nchannels
    return PcmClip(params.nchannels, params.sampwidth, params.framerate, frames[: len(frames) - len(frames) % frame_size])


def wav_duration(wav: bytes) -> float:
    """The length of a PCM WAV clip in seconds."""
    return read_wav(wav).duration


def _mono_frames(clip: PcmClip, rate: int) -> bytes:
    """The clip as 16-bit mono samples at `rate` Hz: as they are when they already are, else through ffmpeg."""
    if clip.channels == 1 and clip.sample_width == SAMPLE_WIDTH and clip.rate == rate:
        return clip.frames
    return read_wav(transcode(clip.wav(), "wav", extra=("-ac", "1", "-ar", str(rate)))).frames


def join_clips(clips: list[bytes], gap_s: float = 0.25) -> tuple[bytes, list[tuple[float, float]]]:
    """One WAV of `clips` in order with `gap_s` of silence between them, and each clip's (begin, end) in seconds.

    Clips may differ in sample rate and channel count: all are brought to the highest rate, in mono, so the
    timings are exact sample positions of the joined file.
    """
    if not clips:
        raise ValueError("`clips` must hold at least one WAV clip")
    if gap_s < 0:
        raise ValueError(f"`gap_s` must be zero or more; got {gap_s}")
    pcm = [read_wav(clip) for clip in clips]
    rate = max(clip.rate for clip in pcm)
    silence = b"\x00" * (round(gap_s * rate) * SAMPLE_WIDTH)
    parts: list[bytes] = []
    timings: list[tuple[float, float]] = []
    position = 0  # in samples
    for index, clip in enumerate(pcm):
        if index:
            parts.append(silence)
            position += len(silence) // SAMPLE_WIDTH
        frames = _mono_frames(clip, rate)
        parts.append(frames)
        timings.append((position / rate, (position + len(frames) // SAMPLE_WIDTH) / rate))
        position += len(frames) // SAMPLE_WIDTH
    joined = PcmClip(1, SAMPLE_WIDTH, rate, b"".join(parts))
    return joined.wav(), timings


def transcode(data: bytes, audio_format: str, *, extra: tuple[str, ...] = (),
              timeout_s: float = FFMPEG_TIMEOUT_S) -> bytes:
    """`data` (any audio ffmpeg reads) re-encoded as `audio_format` (one of `ENCODINGS`)."""
    if audio_format not in ENCODINGS:
        raise ValueError(f"`audio_format` must be one of {', '.join(ENCODINGS)}; got {audio_format!r}")
    with tempfile.TemporaryDirectory(prefix="fabula-audio-") as folder:
        source, target = Path(folder) / "input", Path(folder) / f"output.{audio_format}"
        source.write_bytes(data)
        run_tool(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(source), "-vn", "-map_metadata", "-1",
                  *extra, *ENCODINGS[audio_format], str(target)], timeout_s=timeout_s)
        return target.read_bytes()


def encode(wav: bytes, audio_format: str) -> bytes:
    """A WAV clip encoded for the book: "mp3" (pages, the EPUB), "m4a" (AAC in MP4) or "aac" (ADTS)."""
    clip = read_wav(wav)
    if not clip.frames:
        raise InvalidAudio("The narration clip holds no sound (zero samples); narrate the text again.")
    return transcode(clip.wav(), audio_format)


def probe_duration(data: bytes) -> float:
    """The length in seconds of any audio file ffprobe reads (MP3, M4A, M4B, WAV)."""
    with tempfile.TemporaryDirectory(prefix="fabula-probe-") as folder:
        path = Path(folder) / "audio"
        path.write_bytes(data)
        result = run_tool(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", str(path)])
    try:
        return float(json.loads(result.stdout)["format"]["duration"])
    except (KeyError, ValueError, TypeError):
        raise InvalidAudio("The audio file has no duration ffprobe can read; it is empty or damaged.") from None
