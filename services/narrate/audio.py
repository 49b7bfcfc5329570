"""Audio in the shapes OpenAI's speech API returns, made with ffmpeg over pipes (no temporary files).

Every voice's output is first brought to one canonical form, OpenAI's `pcm`: 24 kHz, 16-bit signed
little-endian, mono. Its length gives the exact duration; `wav` is that with a header, the compressed formats are
encoded from it by ffmpeg.
"""

from __future__ import annotations

import io
import logging
import subprocess
import wave
from dataclasses import dataclass

from shared.errors import FabulaError

logger = logging.getLogger(__name__)

SAMPLE_RATE = 24_000
SAMPLE_BYTES = 2
FFMPEG_TIMEOUT_S = 60.0
# ffmpeg's atempo filter takes factors from 0.5 to 100 in one instance.
MIN_TEMPO = 0.5


class AudioFailed(FabulaError):
    """A program that makes or encodes audio failed or took too long; the details are logged, not shown."""

    status_code = 500
    error_type = "audio_error"


@dataclass(frozen=True)
class AudioFormat:
    name: str
    content_type: str
    ffmpeg_output: tuple[str, ...] | None


FORMATS: dict[str, AudioFormat] = {
    "mp3": AudioFormat("mp3", "audio/mpeg", ("-c:a", "libmp3lame", "-b:a", "64k", "-f", "mp3")),
    "opus": AudioFormat("opus", "audio/ogg", ("-c:a", "libopus", "-b:a", "32k", "-f", "ogg")),
    "aac": AudioFormat("aac", "audio/aac", ("-c:a", "aac", "-b:a", "64k", "-f", "adts")),
    "flac": AudioFormat("flac", "audio/flac", ("-c:a", "flac", "-f", "flac")),
    "wav": AudioFormat("wav", "audio/wav", None),
    "pcm": AudioFormat("pcm", f"audio/L16; rate={SAMPLE_RATE}; channels=1", None),
}


@dataclass(frozen=True)
class Pcm:
    """Mono 16-bit little-endian samples at `sample_rate`."""

    samples: bytes
    sample_rate: int

    @property
    def duration(self) -> float:
        return len(self.samples) / (SAMPLE_BYTES * self.sample_rate)


def pcm_from_wav(data: bytes) -> Pcm:
    """The samples of a mono 16-bit WAV, read chunk by chunk.

    espeak-ng writing to a pipe cannot go back to fill in the sizes, so its header claims a huge `data` chunk:
    whatever follows the `data` header is taken as the samples.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise AudioFailed("The voice produced no WAV audio.")
    position, sample_rate = 12, None
    while position + 8 <= len(data):
        chunk, size = data[position:position + 4], int.from_bytes(data[position + 4:position + 8], "little")
        body = position + 8
        if chunk == b"fmt ":
            channels = int.from_bytes(data[body + 2:body + 4], "little")
            sample_rate = int.from_bytes(data[body + 4:body + 8], "little")
            bits = int.from_bytes(data[body + 14:body + 16], "little")
            if channels != 1 or bits != 16:
                raise AudioFailed(f"The voice produced {channels}-channel {bits}-bit audio, not mono 16-bit.")
        elif chunk == b"data":
            if sample_rate is None:
                raise AudioFailed("The voice's WAV has its samples before its format.")
            samples = data[body:]
            return Pcm(samples[: len(samples) - len(samples) % SAMPLE_BYTES], sample_rate)
        position = body + size + size % 2
    raise AudioFailed("The voice's WAV has no samples.")


def to_canonical(pcm: Pcm, *, tempo: float = 1.0) -> Pcm:
    """Resample to 24 kHz and, when `tempo` is not 1, change the pace without changing the pitch."""
    if pcm.sample_rate == SAMPLE_RATE and abs(tempo - 1.0) < 1e-6:
        return pcm
    filters = ["-af", _atempo_chain(tempo)] if abs(tempo - 1.0) >= 1e-6 else []
    output = run_ffmpeg(
        ["-f", "s16le", "-ar", str(pcm.sample_rate), "-ac", "1", "-i", "pipe:0", *filters,
         "-ar", str(SAMPLE_RATE), "-ac", "1", "-f", "s16le", "pipe:1"],
        pcm.samples,
    )
    return Pcm(output[: len(output) - len(output) % SAMPLE_BYTES], SAMPLE_RATE)


def encode(pcm: Pcm, audio_format: AudioFormat) -> bytes:
    """The canonical audio in `audio_format`'s container and codec."""
    if pcm.sample_rate != SAMPLE_RATE:
        raise ValueError(f"encode() takes {SAMPLE_RATE} Hz audio, not {pcm.sample_rate} Hz")
    if audio_format.name == "pcm":
        return pcm.samples
    if audio_format.name == "wav":
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as writer:
            writer.setnchannels(1)
            writer.setsampwidth(SAMPLE_BYTES)
            writer.setframerate(SAMPLE_RATE)
            writer.writeframes(pcm.samples)
        return buffer.getvalue()
    assert audio_format.ffmpeg_output is not None
    return run_ffmpeg(
        ["-f", "s16le", "-ar", str(SAMPLE_RATE), "-ac", "1", "-i", "pipe:0", *audio_format.ffmpeg_output, "pipe:1"],
        pcm.samples,
    )


def run_ffmpeg(arguments: list[str], stdin: bytes) -> bytes:
    """ffmpeg with `stdin` on its standard input and its standard output returned; never through a shell."""
    command = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", *arguments]
    try:
        completed = subprocess.run(command, input=stdin, capture_output=True, timeout=FFMPEG_TIMEOUT_S, check=False)
    except FileNotFoundError:
        raise AudioFailed("ffmpeg is not installed on the narrate server; install the Debian package ffmpeg.") from None
    except subprocess.TimeoutExpired:
        raise AudioFailed(f"Encoding the audio took longer than {FFMPEG_TIMEOUT_S:.0f} s.") from None
    if completed.returncode != 0:
        detail = completed.stderr.decode("utf-8", "replace").strip()[-2000:]
        logger.error("ffmpeg failed", extra={"fields": {"returncode": completed.returncode, "stderr": detail}})
        raise AudioFailed(f"Encoding the audio failed (ffmpeg exit status {completed.returncode}); the narrate service logged why.")
    return completed.stdout


def _atempo_chain(tempo: float) -> str:
    factors: list[float] = []
    while tempo < MIN_TEMPO:
        factors.append(MIN_TEMPO)
        tempo /= MIN_TEMPO
    factors.append(tempo)
    return ",".join(f"atempo={factor:.6f}" for factor in factors)
