"""Is a text written in the language it should be? (A rule of the rules layer; pure apart from a loaded model.)

A small model asked to translate into German may answer in English, mix in an English sentence, or talk about
its own work ("I've made changes", "the word for ... is"). The script alone cannot tell German from English, so
every translated piece goes through a language identifier: langid.py (BSD licence; its naive Bayes model over
byte n-grams ships inside the package, 97 languages, no download at first use). The whole text must read as the
book's language (or a close neighbour the identifier often mistakes it for, such as Norwegian for Danish), and
no sentence of five words or more may read as English with confidence.

Short texts carry little evidence, and the identifier misreads correct short translations (a Romanian title as
Catalan, an Icelandic one as Norwegian): a text of fewer than `MIN_LETTERS` letters besides the characters' names
(most titles) is judged only against English, and only when the identifier is sure; a longer text is refused when
the identifier is fairly sure it is another language and the book's language is not among its three best guesses.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from webapp.story.languages import find_language

MIN_LETTERS = 12  # below this nothing is judged
SHORT_LETTERS = 40  # below this only "it is English" is judged
SENTENCE_WORDS = 5
ENGLISH_CONFIDENCE = 0.95
OTHER_CONFIDENCE = 0.8
# Languages the identifier confuses with each other on short texts; either counts as the other.
NEIGHBOURS: dict[str, frozenset[str]] = {
    code: frozenset(group)
    for group in (
        {"no", "nb", "nn", "da", "sv", "is", "fo"}, {"ms", "id", "jv", "tl"}, {"hr", "sr", "bs", "sl", "mk"}, {"cs", "sk"},
        {"es", "gl", "ca", "an", "pt", "oc"}, {"ru", "uk", "be", "bg", "mk", "sr"}, {"hi", "mr", "ne"},
        {"fa", "ur", "ps"}, {"zh", "ja"}, {"nl", "af", "lb"}, {"de", "lb"}, {"fr", "oc", "wa"}, {"it", "la"},
        {"fi", "et"}, {"ga", "cy", "br"},
    )
    for code in group
}
_SENTENCE = re.compile(r"[^.!?。！？؟۔।]+[.!?。！？؟۔।]*")
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)

@lru_cache(maxsize=1)
def _identifier() -> Any:
    """langid's identifier with probabilities normalised (loaded once, about two seconds)."""
    from langid.langid import LanguageIdentifier, model

    return LanguageIdentifier.from_modelstring(model, norm_probs=True)

def warm_up() -> None:
    """Load the identifier now (start-up), not on the first translated page."""
    _identifier()

def identify(text: str) -> tuple[str, float]:
    """The most likely language code of `text` and its probability."""
    code, probability = _identifier().classify(text)
    return str(code), float(probability)


def best_guesses(text: str, count: int = 3) -> list[str]:
    """The `count` most likely language codes of `text`."""
    return [str(code) for code, _ in _identifier().rank(text)[:count]]

def accepts(expected: str, found: str) -> bool:
    """Whether text identified as `found` counts as written in `expected`."""
    expected = expected.split("-")[0]
    return found == expected or found in NEIGHBOURS.get(expected, frozenset({expected}))

def language_name(code: str) -> str:
    try:
        return find_language(code).name
    except ValueError:
        return code

def wrong_language(text: str, expected: str, *, names: tuple[str, ...] = ()) -> str | None:
    """Why `text` is not in the language `expected` (a plain sentence), or None when it is or cannot be judged."""
    expected = expected.split("-")[0]
    judged = _without_names(text, names)
    letters = sum(1 for character in judged if character.isalpha())
    if letters < MIN_LETTERS:
        return None
    found, probability = identify(judged)
    if letters < SHORT_LETTERS:
        if found == "en" and expected != "en" and probability >= ENGLISH_CONFIDENCE:
            return f"it reads as English, not {language_name(expected)}"
        return None
    if not accepts(expected, found) and probability >= OTHER_CONFIDENCE and not any(accepts(expected, guess) for guess in best_guesses(judged)):
        return f"it reads as {language_name(found)}, not {language_name(expected)}"
    if expected == "en":
        return None
    for sentence in _SENTENCE.findall(judged):
        if len(_WORD.findall(sentence)) < SENTENCE_WORDS:
            continue
        found, probability = identify(sentence)
        if found == "en" and probability >= ENGLISH_CONFIDENCE:
            return f"it holds an English sentence ({sentence.strip()[:60]!r}) in a {language_name(expected)} text"
    return None

def _without_names(text: str, names: tuple[str, ...]) -> str:
    for name in names:
        if name.strip():
            text = re.sub(r"(?<!\w)" + re.escape(name.strip()) + r"[\w'’]*", " ", text, flags=re.IGNORECASE)
    return text

