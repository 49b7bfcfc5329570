"""The languages a book can be written in, found by code or by name (English or native)."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True)
class Language:
    code: str
    name: str
    native: str
    rtl: bool = False

    @property
    def script(self) -> tuple[str, ...] | None:
        """The Unicode name prefixes of the letters the language is written in; None for the Latin alphabet
        (a check of the script then says nothing: English is Latin too)."""
        first = next(character for character in self.native if character.isalpha())
        family = unicodedata.name(first, "LATIN").split()[0]
        if family == "LATIN":
            return None
        if self.code == "ja":
            return ("CJK", "HIRAGANA", "KATAKANA")
        return (family,)


LANGUAGES: tuple[Language, ...] = (
    Language("en", "English", "English"),
    Language("es", "Spanish", "Español"),
    Language("fr", "French", "Français"),
    Language("de", "German", "Deutsch"),
    Language("it", "Italian", "Italiano"),
    Language("pt", "Portuguese", "Português"),
    Language("nl", "Dutch", "Nederlands"),
    Language("sv", "Swedish", "Svenska"),
    Language("no", "Norwegian", "Norsk"),
    Language("da", "Danish", "Dansk"),
    Language("fi", "Finnish", "Suomi"),
    Language("is", "Icelandic", "Íslenska"),
    Language("pl", "Polish", "Polski"),
    Language("cs", "Czech", "Čeština"),
    Language("sk", "Slovak", "Slovenčina"),
    Language("hu", "Hungarian", "Magyar"),
    Language("ro", "Romanian", "Română"),
    Language("hr", "Croatian", "Hrvatski"),
    Language("sl", "Slovenian", "Slovenščina"),
    Language("lt", "Lithuanian", "Lietuvių"),
    Language("lv", "Latvian", "Latviešu"),
    Language("et", "Estonian", "Eesti"),
    Language("ga", "Irish", "Gaeilge"),
    Language("ca", "Catalan", "Català"),
    Language("eu", "Basque", "Euskara"),
    Language("tr", "Turkish", "Türkçe"),
    Language("el", "Greek", "Ελληνικά"),
    Language("ru", "Russian", "Русский"),
    Language("uk", "Ukrainian", "Українська"),
    Language("bg", "Bulgarian", "Български"),
    Language("sr", "Serbian", "Српски"),
    Language("ar", "Arabic", "العربية", rtl=True),
    Language("he", "Hebrew", "עברית", rtl=True),
    Language("fa", "Persian", "فارسی", rtl=True),
    Language("ur", "Urdu", "اردو", rtl=True),
    Language("hi", "Hindi", "हिन्दी"),
    Language("mr", "Marathi", "मराठी"),
    Language("ne", "Nepali", "नेपाली"),
    Language("bn", "Bengali", "বাংলা"),
    Language("ta", "Tamil", "தமிழ்"),
    Language("th", "Thai", "ไทย"),
    Language("vi", "Vietnamese", "Tiếng Việt"),
    Language("id", "Indonesian", "Bahasa Indonesia"),
    Language("ms", "Malay", "Bahasa Melayu"),
    Language("tl", "Filipino", "Filipino"),
    Language("sw", "Swahili", "Kiswahili"),
    Language("zh", "Chinese", "中文"),
    Language("ja", "Japanese", "日本語"),
    Language("ko", "Korean", "한국어"),
)

_INDEX: dict[str, Language] = {}
for _language in LANGUAGES:
    for _key in (_language.code, _language.name, _language.native):
        _INDEX[_key.casefold()] = _language
_ALIASES = {
    "zh-cn": "zh", "zh-hans": "zh", "zh-tw": "zh", "chinese (simplified)": "zh", "mandarin": "zh", "iw": "he", "nb": "no", "pt-br": "pt",
    "en-us": "en", "en-gb": "en", "farsi": "fa",
}
for _alias, _code in _ALIASES.items():
    _INDEX[_alias] = _INDEX[_code]


def find_language(value: str) -> Language:
    """Look a language up by code ("ko"), English name ("Korean") or native name ("한국어"); raises ValueError."""
    key = value.strip().casefold()
    if key in _INDEX:
        return _INDEX[key]
    base = key.split("-")[0].split("_")[0]
    if base in _INDEX:
        return _INDEX[base]
    raise ValueError(f"unknown language {value!r}; use one of: " + ", ".join(language.code for language in LANGUAGES))
