"""Split a page's text into sentences: the unit the narrator speaks and the reader highlights.

Works for every script Fabula writes: Latin, Cyrillic and Greek end punctuation (abbreviations such as "Mr.",
initials and decimals do not end a sentence, nor does "?" before a lower-case dialogue tag), the full-width
marks of Chinese and Japanese (no space follows them), Arabic "؟" and Urdu "۔", the Devanagari and Bengali
danda "।", and Thai, Lao and Khmer, where a space separates sentences. A blank line always ends one.

Sentences longer than `MAX_SENTENCE_CHARS` are cut at commas and semicolons (then at spaces) so a highlighted
sentence is never a wall of text. No character is lost: joining the sentences gives back the text apart from
the whitespace between them.
"""

from __future__ import annotations

import re
import unicodedata

from webapp.book.scripts import Script, script_of
from webapp.book.text_shaping import primary_language

MAX_SENTENCE_CHARS = 300

# Ends a sentence when followed by a space (or the end of the text).
_TERMINATORS = frozenset(".!?…‼⁇⁈⁉؟۔।॥։።။។\u037e")
# Full-width marks end a sentence whether or not a space follows.
_FULL_WIDTH_TERMINATORS = frozenset("。！？｡")
# Closing quotes and brackets that belong to the sentence they follow.
_CLOSERS = frozenset("\"'”’»›)]}」』）】》〉〕＂＇｣")
# Where an over-long sentence may be cut: after one of these (and a space, for space-separated scripts).
_SOFT_BREAKS = frozenset(",;:،؛、，；：—")
_FULL_WIDTH_SOFT_BREAKS = frozenset("、，；：")
_SPACE_SEPARATED_SENTENCES = frozenset({Script.thai, Script.lao, Script.khmer})
_IDEOGRAPHIC = frozenset({Script.han, Script.kana})
_LETTERS = frozenset({Script.latin, Script.hangul})
_PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n\s*")

# Words that end in a period without ending a sentence (compared in lower case, without the period).
ABBREVIATIONS = frozenset({
    "mr", "mrs", "ms", "mx", "dr", "prof", "sr", "sra", "srta", "jr", "st", "mt", "ft", "vs", "nr", "capt",
    "col", "gen", "lt", "sgt", "gov", "rev", "hon", "fig", "approx", "dept", "ud", "uds", "dra", "lic", "ing",
    "mme", "mlle", "mgr", "hr", "frl", "sig", "dott", "sta", "sto", "pres", "e.g", "i.e", "a.m", "p.m", "z.b", "d.h",
    "bzw", "ca", "vgl", "inc", "ltd", "vol", "pp",
    "проф", "ул", "им", "стр",
})


def split_sentences(text: str, language: str) -> list[str]:
    """The sentences of `text` in order, each stripped of surrounding whitespace; [] for a blank text.

    `language` is a BCP-47 tag; Greek ("el") also ends questions with ";".
    """
    greek = primary_language(language) == "el"
    sentences: list[str] = []
    for paragraph in _PARAGRAPH_BREAK.split(text):
        for sentence in _split_paragraph(paragraph, greek=greek):
            sentences.extend(_cut_long(sentence))
    return sentences


def _split_paragraph(text: str, *, greek: bool) -> list[str]:
    terminators = _TERMINATORS | {";"} if greek else _TERMINATORS
    pieces: list[str] = []
    start = index = 0
    while index < len(text):
        char = text[index]
        if char in terminators or char in _FULL_WIDTH_TERMINATORS:
            end = index + 1
            while end < len(text) and (text[end] in terminators or text[end] in _FULL_WIDTH_TERMINATORS
                                       or text[end] in _CLOSERS):
                end += 1
            if _ends_sentence(text, start, index, end, full_width=any(c in _FULL_WIDTH_TERMINATORS for c in text[index:end])):
                pieces.append(text[start:end])
                start = end
            index = end
        elif char.isspace() and _separates_sentences(text, index):
            pieces.append(text[start:index])
            start = index
            index += 1
        else:
            index += 1
    pieces.append(text[start:])
    return [piece.strip() for piece in pieces if piece.strip()]


def _ends_sentence(text: str, start: int, mark: int, end: int, *, full_width: bool) -> bool:
    """Whether the punctuation `text[mark:end]` closes the sentence that began at `start`."""
    if end >= len(text):
        return True
    following_script = script_of(text[end])
    if full_width or following_script in _IDEOGRAPHIC:
        # 「こんにちは！」と言った。 and “你好！”他说。: a quotation inside a sentence goes on without a space.
        return not (text[end - 1] in _CLOSERS and following_script in _IDEOGRAPHIC | _LETTERS)
    if not text[end].isspace():
        return False  # "3.14", "e.g.x", "?!" inside a word
    following = text[end:].lstrip()
    if not following:
        return True
    if following[0].islower():
        return False  # '"Where are you?" she asked.' and "approx. ten"
    if text[mark] == "." and end == mark + 1:
        return not _is_abbreviation(text[start:mark])
    return True


def _is_abbreviation(before: str) -> bool:
    words = before.split()
    if not words:
        return False
    word = words[-1].lstrip("\"'“‘«(¿¡[").lower()
    if word in ABBREVIATIONS:
        return True
    if len(word) == 1 and word.isalpha():
        return True  # an initial: "J. K. Rowling"
    parts = word.split(".")
    return len(parts) > 1 and all(0 < len(part) <= 2 and part.isalpha() for part in parts)  # "U.S", "a.m"


def _separates_sentences(text: str, index: int) -> bool:
    """A space between two Thai (Lao, Khmer) letters ends a sentence: those scripts use no full stop."""
    if index == 0 or text[index - 1].isspace():
        return False
    before = next((c for c in reversed(text[:index]) if unicodedata.category(c)[0] != "M"), "")
    after = next((c for c in text[index + 1:] if not c.isspace()), "")
    return bool(before and after) and {script_of(before), script_of(after)} <= _SPACE_SEPARATED_SENTENCES


def _cut_long(sentence: str, limit: int = MAX_SENTENCE_CHARS) -> list[str]:
    """`sentence` in pieces of at most `limit` characters, cut after commas where it can, then at spaces."""
    pieces: list[str] = []
    rest = sentence
    while len(rest) > limit:
        cut = _last_cut(rest, limit)
        pieces.append(rest[:cut].strip())
        rest = rest[cut:].strip()
    if rest:
        pieces.append(rest)
    return pieces


def _last_cut(text: str, limit: int) -> int:
    minimum = limit // 4  # a cut that leaves a tiny first piece is no better than the wall
    soft = [i + 1 for i in range(minimum, limit)
            if (text[i] in _SOFT_BREAKS and i + 1 < len(text) and text[i + 1].isspace()) or text[i] in _FULL_WIDTH_SOFT_BREAKS]
    if soft:
        return soft[-1]
    spaces = [i for i in range(minimum, limit + 1) if text[i].isspace()]
    if spaces:
        return spaces[-1]
    cut = limit
    while cut > minimum and (unicodedata.category(text[cut])[0] == "M" or text[cut - 1] in "\u200d\u200c"
                             or unicodedata.name(text[cut - 1], "").endswith("VIRAMA")):
        cut -= 1  # never part a letter from its marks or a conjunct
    return cut
