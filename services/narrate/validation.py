"""Bound a speech request's body and check the request against the service's limits before any audio is made.

Each error names the field (`param`) and the rule, with the setting that holds a limit, so a caller can fix the
request without reading the code.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.narrate.audio import FORMATS, AudioFormat
from services.narrate.espeak import EspeakEngine
from services.narrate.languages import SpeechLanguage, find_speech_language
from services.narrate.schemas import MAX_SPEED, MIN_SPEED, SpeechRequest
from services.narrate.text import speakable_text
from services.narrate.voices import Voice
from shared.bodies import BodyLimit
from shared.errors import InvalidRequest
from shared.settings import Settings

OPENAI_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
# How fast speech goes at speed 1.0, to estimate a request's length before speaking it: espeak-ng reads about 17
# Latin characters a second at its default rate; 20 errs short, so no request under the limit is refused on a guess
# (the audio made is measured after, too). A CJK or Hangul character is a syllable or a word: it counts as three.
CHARACTERS_PER_SECOND = 20.0
_SYLLABIC_FROM = 0x2E80
_SYLLABIC_WEIGHT = 3
# `input` and `instructions` at worst 12 bytes per character in JSON (an escaped surrogate pair), plus the rest.
_BYTES_PER_CHARACTER = 2 * 12
_BODY_OVERHEAD_BYTES = 16 * 1024


@dataclass(frozen=True)
class Utterance:
    """What one checked speech request asks to be read: the text as it will be spoken, in which voice and format."""

    text: str
    voice: Voice
    language: SpeechLanguage
    audio_format: AudioFormat
    speed: float
    max_seconds: float = float("inf")  # the most audio it may make (FABULA_MAX_SPEECH_SECONDS)


def estimated_seconds(text: str, speed: float) -> float:
    """Roughly how long `text` takes to read at `speed` (on the short side)."""
    units = sum(_SYLLABIC_WEIGHT if ord(character) >= _SYLLABIC_FROM else 1 for character in text if not character.isspace())
    return units / (CHARACTERS_PER_SECOND * speed)


def too_long(seconds: float, speed: float, limit: float, *, measured: bool) -> InvalidRequest:
    how = "made" if measured else "would make about"
    return InvalidRequest(
        f"`input` {how} {seconds:,.0f} s of audio at speed {speed:g}; the limit is {limit:,.0f} s (FABULA_MAX_SPEECH_SECONDS). "
        "Split the text and ask for each part, or speak it faster.",
        param="input",
    )


def max_body_bytes(settings: Settings) -> int:
    return settings.max_speech_chars * _BYTES_PER_CHARACTER + _BODY_OVERHEAD_BYTES


def speech_body_limit(settings: Settings) -> BodyLimit:
    return BodyLimit(
        max_bytes=max_body_bytes(settings), param="body",
        rule=f"the limit is {max_body_bytes(settings):,} bytes (it follows FABULA_MAX_SPEECH_CHARS)",
    )


def check_speech_request(request: SpeechRequest, engine: EspeakEngine, settings: Settings) -> Utterance:
    """Every rule, in the order a caller would fix them; returns what to synthesise."""
    if not request.input.strip():
        raise InvalidRequest("`input` is empty; send the text to read aloud.", param="input")
    for field in ("input", "instructions"):
        text = getattr(request, field)
        if text is not None and len(text) > settings.max_speech_chars:
            raise InvalidRequest(
                f"`{field}` is {len(text):,} characters; the limit is {settings.max_speech_chars:,} "
                "(FABULA_MAX_SPEECH_CHARS). Split the text and ask for each part.",
                param=field,
            )
    audio_format = FORMATS.get(request.response_format.strip().lower())
    if audio_format is None:
        raise InvalidRequest(
            f"`response_format` {request.response_format[:40]!r} is not one of {', '.join(FORMATS)}.", param="response_format"
        )
    if not MIN_SPEED <= request.speed <= MAX_SPEED:
        raise InvalidRequest(f"`speed` must be between {MIN_SPEED} and {MAX_SPEED}, not {request.speed}.", param="speed")
    if request.stream_format == "sse":
        raise InvalidRequest("`stream_format` `sse` is not offered; leave it out or send `audio`.", param="stream_format")
    if request.model is not None and not _known_model(request.model, engine):
        raise InvalidRequest(
            f"`model` {request.model[:60]!r} is not served here; send {', '.join(OPENAI_MODELS)} or {engine.model_id!r} "
            "(each is answered by the loaded engine), or leave it out.",
            param="model",
        )
    language = find_speech_language(request.language)
    voice = engine.catalogue.resolve(request.voice_name, language)
    text = speakable_text(request.input, language)
    estimate = estimated_seconds(text, request.speed)
    if estimate > settings.max_speech_seconds:
        raise too_long(estimate, request.speed, settings.max_speech_seconds, measured=False)
    return Utterance(
        text=text, voice=voice, language=language, audio_format=audio_format, speed=request.speed,
        max_seconds=settings.max_speech_seconds,
    )


def _known_model(model: str, engine: EspeakEngine) -> bool:
    name = model.strip().lower()
    return name == engine.model_id or name in OPENAI_MODELS or name.startswith("gpt-4o-mini-tts-")
