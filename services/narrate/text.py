"""Turn a request's `input` into the text a voice reads aloud.

A story's text is prose, so what is not prose is taken out before it reaches espeak-ng: markup-looking tags
(espeak-ng would read `<break time="3s"/>` aloud, word by word), control characters (a NUL ends espeak-ng's input
early), emoji and other pictographs (read as their Unicode names: "grinning face"), and `[[`, which espeak-ng
takes as the start of raw phoneme codes. Letters of every script, digits and punctuation stay.
"""

from __future__ import annotations

import re
import unicodedata

from services.narrate.languages import SpeechLanguage
from shared.errors import InvalidRequest

_TAG = re.compile(r"</?[A-Za-z][\w:.-]{0,40}(?:\s[^<>]{0,400})?/?>")
_SPACES = re.compile(r"[ \t\r\f\v]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")
# Zero-width non-joiner and joiner spell words in Persian, Urdu and the Indic scripts; other format
# characters (bidi controls, byte-order marks) carry no sound.
_KEPT_FORMAT = {"\u200c", "\u200d"}
_DROPPED_CATEGORIES = {"Cc", "Cs", "Co", "Cn", "So", "Sk"}
_KANJI = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]")


def speakable_text(text: str, language: SpeechLanguage) -> str:
    """The text to read, or `InvalidRequest` naming `input` when nothing readable is left."""
    cleaned = unicodedata.normalize("NFC", text)
    cleaned = _TAG.sub(" ", cleaned)
    cleaned = "".join(_kept(character) for character in cleaned)
    cleaned = re.sub(r"\[(?=\[)", "[ ", cleaned)  # every `[[`, overlapping ones too ("[[[")
    cleaned = _BLANK_LINES.sub("\n", _SPACES.sub(" ", cleaned)).strip()
    if not any(unicodedata.category(character)[0] in "LN" for character in cleaned):
        raise InvalidRequest(
            "`input` has nothing to read aloud: no letters or digits are left once markup, control characters "
            "and emoji are taken out.",
            param="input",
        )
    if not language.reads_kanji and _KANJI.search(cleaned):
        raise InvalidRequest(
            "`input` has kanji, which espeak-ng's Japanese voice cannot read (it says \"Chinese letter\" for each); "
            "send the text in kana, or use a neural voice for Japanese.",
            param="input",
        )
    return cleaned


def _kept(character: str) -> str:
    if character in "\n\t":
        return " " if character == "\t" else "\n"
    category = unicodedata.category(character)
    if category in _DROPPED_CATEGORIES:
        return " " if category == "Cc" else ""
    if category == "Cf" and character not in _KEPT_FORMAT:
        return ""
    if "\ufe00" <= character <= "\ufe0f":
        return ""
    return character
