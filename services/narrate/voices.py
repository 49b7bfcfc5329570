"""The voices on offer per language, and how a requested voice name (an id or an OpenAI name) picks one.

An espeak-ng voice is a language voice plus a variant that gives it a timbre (`en-us+f3`: American English,
female variant 3); the id is the exact `-v` argument, so the `X-Voice` header names what spoke. OpenAI's voice
names are accepted so that OpenAI clients work unchanged: each maps, by its usual gender, onto one of the
language's voices.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.narrate.languages import SpeechLanguage
from shared.errors import InvalidRequest

ENGINE = "espeak-ng"
LICENCE = "GPL-3.0-or-later"

# (variant, gender); None is the language voice itself. The variants ship with espeak-ng (voices/!v).
VARIANTS: tuple[tuple[str | None, str], ...] = (("f3", "female"), ("f4", "female"), (None, "male"), ("m3", "male"))

# OpenAI's built-in voice names, in OpenAI's order, with the gender their voices are usually heard as.
OPENAI_VOICES: dict[str, str] = {
    "alloy": "female", "ash": "male", "ballad": "male", "coral": "female", "echo": "male", "fable": "male",
    "onyx": "male", "nova": "female", "sage": "female", "shimmer": "female", "verse": "male",
    "marin": "female", "cedar": "male",
}


@dataclass(frozen=True)
class Voice:
    id: str
    language: str
    locale: str
    gender: str
    name: str


def voice_id(locale: str, variant: str | None) -> str:
    return locale if variant is None else f"{locale}+{variant}"


class VoiceCatalogue:
    """The voices this espeak-ng installation can speak with, built from what `espeak-ng --voices` listed."""

    def __init__(self, installed_locales: set[str], installed_variants: set[str]) -> None:
        self.installed_locales = installed_locales
        self.variants = tuple((variant, gender) for variant, gender in VARIANTS if variant is None or variant in installed_variants)

    def voices(self, language: SpeechLanguage) -> list[Voice]:
        """Every voice for the language, the chosen locale's first; empty when espeak-ng lacks them all."""
        locales = [language.locale, *(locale for locale in language.locales if locale != language.locale)]
        voices: list[Voice] = []
        for locale in locales:
            if locale not in self.installed_locales:
                continue
            numbers = {"female": 0, "male": 0}
            for variant, gender in self.variants:
                numbers[gender] += 1
                voices.append(Voice(
                    id=voice_id(locale, variant), language=language.code, locale=locale, gender=gender,
                    name=f"{language.name} ({locale}), {gender} {numbers[gender]}",
                ))
        return voices

    def require_voices(self, language: SpeechLanguage) -> list[Voice]:
        voices = self.voices(language)
        if not voices:
            raise InvalidRequest(
                f"The installed espeak-ng has no {language.name} voice ({', '.join(language.locales)}); "
                "install the full Debian package espeak-ng-data, or choose another language.",
                param="language",
            )
        return voices

    def aliases(self, language: SpeechLanguage) -> dict[str, str]:
        """OpenAI voice name → the voice id it speaks with in this language (chosen locale, matching gender)."""
        offered = self.require_voices(language)
        voices = [voice for voice in offered if voice.locale == offered[0].locale]
        by_gender = {gender: [voice for voice in voices if voice.gender == gender] for gender in ("female", "male")}
        counts = {"female": 0, "male": 0}
        mapping: dict[str, str] = {}
        for name, gender in OPENAI_VOICES.items():
            pool = by_gender[gender] or voices
            mapping[name] = pool[counts[gender] % len(pool)].id
            counts[gender] += 1
        return mapping

    def resolve(self, requested: str, language: SpeechLanguage) -> Voice:
        """The voice to speak with; raises `InvalidRequest` naming `voice` for one that is not on offer."""
        voices = self.require_voices(language)
        by_id = {voice.id: voice for voice in voices}
        key = requested.strip().lower()
        alias = self.aliases(language).get(key)
        if alias is not None:
            return by_id[alias]
        if key in by_id:
            return by_id[key]
        locale = key.split("+")[0]
        if locale in self.installed_locales and locale not in language.locales:
            raise InvalidRequest(
                f"`voice` {requested!r} speaks another language than {language.name} (`language` {language.code!r}); "
                f"use one of {', '.join(by_id)} or an OpenAI voice name.",
                param="voice",
            )
        raise InvalidRequest(
            f"`voice` {requested[:60]!r} is not a voice here. For {language.name} use one of {', '.join(by_id)}, "
            f"or one of OpenAI's names ({', '.join(OPENAI_VOICES)}); GET /v1/audio/voices lists them all.",
            param="voice",
        )
