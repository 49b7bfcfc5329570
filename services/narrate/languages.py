"""Which espeak-ng voice speaks each language a book can be written in, and how a language tag finds it.

The codes are those of the story writer's language list; each maps onto the espeak-ng voices (by the names
`espeak-ng --voices` prints) that pronounce it, the first being the default. A language espeak-ng cannot speak
is listed with the reason, so a request for it is refused with a message instead of speaking it wrongly.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.errors import InvalidRequest


@dataclass(frozen=True)
class SpeechLanguage:
    """A language the service can be asked for: its code, its English name and the espeak-ng voices for it.

    `locale` is the voice the request's tag chose ("pt-br" for `pt-BR`); aliases such as `nova` speak with it.
    """

    code: str
    name: str
    locales: tuple[str, ...]
    locale: str

    @property
    def reads_kanji(self) -> bool:
        """espeak-ng's Japanese voice reads kana only and says "Chinese letter" for every kanji."""
        return self.code != "ja"


# code: (English name, espeak-ng voices, first = default)
SPOKEN: dict[str, tuple[str, tuple[str, ...]]] = {
    "en": ("English", ("en-us", "en-gb")),
    "es": ("Spanish", ("es", "es-419")),
    "fr": ("French", ("fr-fr", "fr-be")),
    "de": ("German", ("de",)),
    "it": ("Italian", ("it",)),
    "pt": ("Portuguese", ("pt", "pt-br")),
    "nl": ("Dutch", ("nl",)),
    "sv": ("Swedish", ("sv",)),
    "no": ("Norwegian", ("nb",)),
    "da": ("Danish", ("da",)),
    "fi": ("Finnish", ("fi",)),
    "is": ("Icelandic", ("is",)),
    "pl": ("Polish", ("pl",)),
    "cs": ("Czech", ("cs",)),
    "sk": ("Slovak", ("sk",)),
    "hu": ("Hungarian", ("hu",)),
    "ro": ("Romanian", ("ro",)),
    "hr": ("Croatian", ("hr",)),
    "sl": ("Slovenian", ("sl",)),
    "lt": ("Lithuanian", ("lt",)),
    "lv": ("Latvian", ("lv",)),
    "et": ("Estonian", ("et",)),
    "ga": ("Irish", ("ga",)),
    "ca": ("Catalan", ("ca",)),
    "eu": ("Basque", ("eu",)),
    "tr": ("Turkish", ("tr",)),
    "el": ("Greek", ("el",)),
    "ru": ("Russian", ("ru",)),
    "uk": ("Ukrainian", ("uk",)),
    "bg": ("Bulgarian", ("bg",)),
    "sr": ("Serbian", ("sr",)),
    "ar": ("Arabic", ("ar",)),
    "he": ("Hebrew", ("he",)),
    "fa": ("Persian", ("fa",)),
    "ur": ("Urdu", ("ur",)),
    "hi": ("Hindi", ("hi",)),
    "mr": ("Marathi", ("mr",)),
    "ne": ("Nepali", ("ne",)),
    "bn": ("Bengali", ("bn",)),
    "ta": ("Tamil", ("ta",)),
    "th": ("Thai", ("th",)),
    "vi": ("Vietnamese", ("vi",)),
    "id": ("Indonesian", ("id",)),
    "ms": ("Malay", ("ms",)),
    "sw": ("Swahili", ("sw",)),
    "zh": ("Chinese", ("cmn",)),
    "ja": ("Japanese", ("ja",)),
    "ko": ("Korean", ("ko",)),
}

# Languages a book can be written in that espeak-ng (1.51) has no voice for.
UNSPOKEN: dict[str, str] = {
    "tl": "Filipino",
}

# Other spellings of a code: ISO 639 synonyms and three-letter codes that BCP-47 tags may carry.
CODE_ALIASES = {
    "nb": "no", "nn": "no", "iw": "he", "in": "id", "fil": "tl", "cmn": "zh", "yue": "zh",
    "eng": "en", "spa": "es", "fra": "fr", "deu": "de", "ara": "ar", "hin": "hi", "kor": "ko", "jpn": "ja", "zho": "zh",
}

# A tag's region or script that picks one of the language's voices.
LOCALE_TAGS = {
    "en-gb": "en-gb", "en-uk": "en-gb", "en-ie": "en-gb", "en-au": "en-gb", "en-nz": "en-gb",
    "es-419": "es-419", "es-mx": "es-419", "es-ar": "es-419", "es-co": "es-419", "es-us": "es-419",
    "pt-br": "pt-br", "fr-be": "fr-be",
}


def find_speech_language(tag: str, *, param: str = "language") -> SpeechLanguage:
    """Look a BCP-47 or ISO 639 tag up ("en", "pt-BR", "zh-Hans", "fil"); raises `InvalidRequest` naming `param`."""
    key = tag.strip().replace("_", "-").lower()
    primary = key.split("-")[0]
    code = CODE_ALIASES.get(primary, primary)
    if code in UNSPOKEN:
        raise InvalidRequest(
            f"`{param}` is {tag!r} ({UNSPOKEN[code]}), which espeak-ng cannot speak: it has no {UNSPOKEN[code]} voice. "
            "Leave this book without narration, or choose another language.",
            param=param,
        )
    if code not in SPOKEN:
        raise InvalidRequest(
            f"`{param}` {tag[:40]!r} is not a language this service speaks; use a code such as "
            + ", ".join(sorted(SPOKEN)) + ".",
            param=param,
        )
    name, locales = SPOKEN[code]
    locale = LOCALE_TAGS.get(key) or LOCALE_TAGS.get("-".join(key.split("-")[:2])) or locales[0]
    return SpeechLanguage(code=code, name=name, locales=locales, locale=locale)


def all_languages() -> list[SpeechLanguage]:
    return [SpeechLanguage(code=code, name=name, locales=locales, locale=locales[0]) for code, (name, locales) in SPOKEN.items()]
