"""The rules every generated piece of a book passes before it is saved (pure functions).

A model, small or large, can answer with machinery instead of a story: braces and schema words, field names from
the prompt, URLs, code, placeholders, the instructions echoed back, or one phrase repeated until the budget runs
out. `tidy` first removes what is only wrapping (labels such as "Page 2:", quotes around the whole answer,
Markdown marks, a sentence cut off by the token budget, the tail of a runaway repetition); `check` then names
every rule the rest still breaks. The writer regenerates a piece that breaks a rule and, if it keeps breaking
them, uses a safe fallback, so machinery never reaches a book.

A rule is `hard` (the piece is unusable) or soft (the piece is usable but worse: it misses the characters or the
reader's idea); among candidates that pass the hard rules the writer keeps the one with the fewest soft misses.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from enum import Enum

from shared.blocked_words import find_blocked


class Piece(str, Enum):
    title = "title"
    beat = "beat"
    page = "page"
    translation = "translation"
    look = "look"


@dataclass(frozen=True)
class Violation:
    rule: str
    detail: str
    hard: bool = True

    def __str__(self) -> str:
        return f"{self.rule}: {self.detail}"


@dataclass(frozen=True)
class Expectations:
    """What a piece should keep: the characters' names, the reader's idea, words that may never appear."""

    names: tuple[str, ...] = ()
    idea_words: tuple[str, ...] = ()
    blocked_words: tuple[str, ...] = ()
    instructions: str = ""  # the prompt: echoing its own wording (not the material inside it) is machinery
    material: str = ""  # what the prompt quoted (plan, caption, idea, names): repeating it is fine
    min_words: int = 20
    min_sentences: int = 2
    max_chars: int = 1200
    source: str = ""  # for a translation: the English text it translates
    script: tuple[str, ...] | None = None  # for a translation: the target language's script (Unicode name prefixes)
    must_keep: bool = False  # the names and the idea are hard rules here (the opening page), soft elsewhere


@dataclass
class Verdict:
    text: str
    violations: list[Violation] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return not any(violation.hard for violation in self.violations)

    @property
    def misses(self) -> int:
        return sum(1 for violation in self.violations if not violation.hard)


# ---- what counts as machinery -------------------------------------------------------------------------------
MACHINERY_CHARACTERS = re.compile(r"[{}\[\]<>|\\`^~_=#@$]")
URL = re.compile(r"(https?://|www\.|\b[\w-]+\.(com|org|net|io|edu|gov|html?|php|json|py)\b|\b\S+@\S+\.\w+)", re.IGNORECASE)
IDENTIFIER = re.compile(r"\b([a-z]+_[a-z0-9_]+|[a-z]+[A-Z][A-Za-z]+|[A-Z][a-z]+[A-Z][A-Za-z]*(Schema|Page|Outline|Text|Model)\w*)\b")
SCHEMA_WORDS = re.compile(
    r"\b(json|schema|schemas|maxlength|minlength|properties|payload|null|undefined|boolean|string\s+field|"
    r"placeholder|lorem|ipsum|todo|tbd|xxx+|insert\s+(name|text|title)|your\s+(title|text|story)\s+here|"
    r"as\s+an\s+ai|language\s+model|i\s+cannot|i\s+can.t\s+help|chatbot)\b",
    re.IGNORECASE,
)
CODE = re.compile(r"(\bdef\s+\w+\(|\bimport\s+\w+|\breturn\s+\w+;|;\s*$|\(\)|=>|::|\bfunction\s*\(|\bprint\()", re.MULTILINE)
META = re.compile(
    r"\b(page|pages|picture\s+book|chapter|story|stories|tale|storybook|in\s+this\s+part|the\s+end|happy\s+ending|"
    r"the\s+reader|readers|the\s+photo|photo\s+shows|illustrat\w*|narrator|ladies\s+and\s+gentlemen)\b",
    re.IGNORECASE,
)
PROMPT_LABELS = re.compile(
    r"\b(page|part|chapter|beat|scene|title|text|story|paragraph|section)\s*\d*\s*:", re.IGNORECASE
)
LEADING_LABEL = re.compile(
    r"^\s*(?:[-*•]\s*)?(?:(?:page|part|chapter|beat|scene|step|paragraph|section)\s*\d+\s*(?:of\s*\d+)?\s*[:.)\-–—]\s*|"
    r"\d+\s*[.):\-–—]\s+|(?:title|text|story|translation|answer|beat|scene|page text)\s*[:\-–—]\s*)",
    re.IGNORECASE,
)
MARKDOWN = re.compile(r"(\*\*|__|\*|^#+\s*|^>\s*)", re.MULTILINE)
QUOTES = "\"'“”‘’«»„「」『』"
SENTENCE_END = re.compile(r"[.!?。！？؟۔।‼⁇…]+[\"'”’»」』)]*")
WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*", re.UNICODE)
STOPWORDS = frozenset(
    "a an the and or but of to in on at by for with from into onto over under about as is are was were be been being "
    "it its this that these those he she they we you i his her their our your my me him them us who what which when "
    "where why how not no so then than there here very just up down out off all any some one two had has have do did "
    "does can could would should will shall may might must also too only each every story page book".split()
)
UNSPACED_SCRIPTS = ("CJK", "HIRAGANA", "KATAKANA", "HANGUL", "THAI", "LAO", "KHMER", "MYANMAR")


def words(text: str) -> list[str]:
    return WORD.findall(text)


def content_words(text: str) -> list[str]:
    """The words of `text` that carry meaning (lower case): used to check that a reader's idea is kept."""
    return [word.lower() for word in words(text) if len(word) > 2 and word.lower() not in STOPWORDS]


def sentences(text: str) -> list[str]:
    """Sentences that end with sentence punctuation (in any of the scripts Fabula writes)."""
    found, start = [], 0
    for match in SENTENCE_END.finditer(text):
        piece = text[start : match.end()].strip()
        if piece:
            found.append(piece)
        start = match.end()
    return found


def script_share(text: str, script: str | tuple[str, ...]) -> float:
    """The share of `text`'s letters that belong to `script` (Unicode name prefixes such as 'HANGUL')."""
    prefixes = (script,) if isinstance(script, str) else script
    letters = [character for character in text if character.isalpha()]
    if not letters:
        return 0.0
    return sum(1 for character in letters if unicodedata.name(character, "").startswith(prefixes)) / len(letters)


# ---- tidying: remove wrapping, keep the words -----------------------------------------------------------------
def tidy(text: str, piece: Piece, *, max_chars: int = 1200, max_sentences: int | None = None) -> str:
    """The piece without its wrapping: labels, quotes, Markdown, a cut-off last sentence, a runaway tail."""
    text = unicodedata.normalize("NFC", re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b-\u200f\u202a-\u202e\u2066-\u2069]", "", text))
    text = MARKDOWN.sub("", text)
    if piece in (Piece.title, Piece.beat, Piece.look):
        text = next((line for line in (line.strip() for line in text.splitlines()) if line), "")
    lines = [LEADING_LABEL.sub("", line.strip(), count=1).strip() for line in text.splitlines()]
    text = " ".join(line for line in lines if line)
    text = re.sub(r"\s+", " ", text).strip()
    text = _unwrapped(text)
    if piece is Piece.title:
        text = text.rstrip(".").strip()
        return text[:max_chars].strip()
    if piece is Piece.look:
        return text.rstrip(".").strip()[:max_chars]
    text = cut_repetition(text)
    found = sentences(text)
    if found:
        kept: list[str] = []
        for sentence in found:
            if max_sentences is not None and len(kept) >= max_sentences:
                break
            if len(" ".join([*kept, sentence])) > max_chars and kept:
                break
            if sentence not in kept:
                kept.append(sentence)
        text = " ".join(kept)
    return _unwrapped(text[:max_chars].strip())


def _unwrapped(text: str) -> str:
    """Without quotes around the whole text, or a lone opening or closing quote left by a cut."""
    while len(text) >= 2 and text[0] in QUOTES and text[-1] in QUOTES:
        text = text[1:-1].strip()
    if text and text[0] in QUOTES and _unbalanced(text, text[0]):
        text = text[1:].strip()
    if text and text[-1] in QUOTES and _unbalanced(text, text[-1]):
        text = text[:-1].strip()
    return text


def _unbalanced(text: str, quote: str) -> bool:
    pairs = {"“": "”", "”": "“", "‘": "’", "’": "‘", "«": "»", "»": "«"}
    partner = pairs.get(quote)
    if partner is None:
        return text.count(quote) % 2 == 1
    return text.count(quote) != text.count(partner)


def cut_repetition(text: str) -> str:
    """Drop a runaway tail: from the first sentence that repeats an earlier one (or mostly does) onwards."""
    found = sentences(text)
    seen: list[set[str]] = []
    position = 0
    for sentence in found:
        bag = {word.lower() for word in words(sentence)}
        if bag and any(len(bag & earlier) / max(1, len(bag | earlier)) >= 0.8 for earlier in seen):
            return text[:position].strip()
        seen.append(bag)
        position = text.find(sentence, position) + len(sentence)
    return text


# ---- checking -------------------------------------------------------------------------------------------------
def check(text: str, piece: Piece, expect: Expectations) -> Verdict:
    """Every rule `text` breaks for its kind of piece (after `tidy`)."""
    found: list[Violation] = []
    lowered = text.lower()
    found += _machinery(text, piece)
    found += _blocked(lowered, expect.blocked_words)
    found += _echo(text, expect.instructions, expect.material)
    found += _repetition(text)
    if piece is Piece.title:
        count = len(words(text))
        if not 1 <= count <= 16:
            found.append(Violation("title length", f"a title has 1–16 words, this has {count}"))
        if re.search(r"\b(title|untitled)\b", text, re.IGNORECASE) or text.lower().strip() in {"story", "a story", "the story"} or text.endswith(":"):
            found.append(Violation("title", "it is a label, not a title"))
    elif piece is Piece.look:
        if not 1 <= len(words(text)) <= 24:
            found.append(Violation("look length", "a look is a short phrase of 1–24 words"))
    else:
        found += _prose(text, piece, expect)
    if piece in (Piece.page, Piece.beat) and expect.names and not any(_mentions(lowered, name) for name in expect.names):
        # A page or beat that names none of the characters has drifted from the book: always a hard rule.
        found.append(Violation("names", "it names none of the characters (" + ", ".join(expect.names) + ")"))
    if piece is Piece.page and expect.idea_words and not any(word in lowered for word in _stems(expect.idea_words)):
        found.append(Violation("idea", "it does not touch the reader's idea", hard=expect.must_keep))
    if piece is Piece.translation:
        found += _translation(text, expect)
    return Verdict(text, found)


def _machinery(text: str, piece: Piece) -> list[Violation]:
    found = []
    if "\ufffd" in text or any(0xD800 <= ord(char) <= 0xDFFF or ord(char) < 0x20 and char not in "\n\t" for char in text):
        found.append(Violation("broken characters", "it holds characters that are not text (a broken encoding)"))
    if MACHINERY_CHARACTERS.search(text):
        found.append(Violation("machinery", f"it contains {MACHINERY_CHARACTERS.search(text).group(0)!r}"))  # type: ignore[union-attr]
    if URL.search(text):
        found.append(Violation("url", "it contains a web or mail address"))
    identifier = IDENTIFIER.search(text)
    if identifier:
        found.append(Violation("field name", f"it contains the identifier {identifier.group(0)!r}"))
    schema = SCHEMA_WORDS.search(text)
    if schema:
        found.append(Violation("schema word", f"it contains {schema.group(0)!r}"))
    if CODE.search(text):
        found.append(Violation("code", "it looks like code"))
    label = PROMPT_LABELS.search(text)
    if label and piece is not Piece.title:
        found.append(Violation("label", f"it contains the label {label.group(0)!r}"))
    meta = META.search(text)
    if meta and piece in (Piece.page, Piece.beat):
        found.append(Violation("about the book", f"it talks about the book ({meta.group(0)!r}) instead of telling the story"))
    return found


def _blocked(lowered: str, blocked: tuple[str, ...]) -> list[Violation]:
    return [Violation("blocked word", f"it contains the blocked word {word!r}") for word in blocked if word and find_blocked(lowered, (word,))]


def _grams(text: str, size: int = 6) -> set[tuple[str, ...]]:
    tokens = [word.lower() for word in words(text)]
    return {tuple(tokens[index : index + size]) for index in range(len(tokens) - size + 1)}


def _echo(text: str, instructions: str, material: str) -> list[Violation]:
    """Six words in a row copied from the instructions (not from the material they quote) means the prompt leaked."""
    if not instructions:
        return []
    grams = _grams(instructions) - _grams(material)
    mine = [word.lower() for word in words(text)]
    for index in range(len(mine) - 5):
        if tuple(mine[index : index + 6]) in grams:
            return [Violation("echo", "it repeats the instructions: " + " ".join(mine[index : index + 6]))]
    return []


def _repetition(text: str) -> list[Violation]:
    tokens = [word.lower() for word in words(text)]
    for index in range(len(tokens) - 3):
        if len(set(tokens[index : index + 4])) == 1:
            return [Violation("repetition", f"{tokens[index]!r} four times in a row")]
    grams: dict[tuple[str, ...], int] = {}
    for index in range(len(tokens) - 3):
        gram = tuple(tokens[index : index + 4])
        grams[gram] = grams.get(gram, 0) + 1
        if grams[gram] >= 3:
            return [Violation("repetition", "the phrase " + repr(" ".join(gram)) + " three times")]
    if len(tokens) >= 30 and len(set(tokens)) / len(tokens) < 0.35:
        return [Violation("repetition", "too few different words")]
    return []


def _prose(text: str, piece: Piece, expect: Expectations) -> list[Violation]:
    found = []
    if piece is Piece.translation:
        return found
    count = len(words(text))
    spaced = script_share(text, UNSPACED_SCRIPTS) <= 0.3
    minimum_words = expect.min_words if piece is Piece.page else 4
    minimum_sentences = expect.min_sentences if piece is Piece.page else 1
    if spaced and count < minimum_words:
        found.append(Violation("too short", f"{count} words; at least {minimum_words}"))
    if len(sentences(text)) < minimum_sentences:
        found.append(Violation("sentences", f"at least {minimum_sentences} complete sentence(s) ending in punctuation"))
    if piece is Piece.beat:
        found += _listing(text)
    if len(text) > expect.max_chars:
        found.append(Violation("too long", f"{len(text)} characters; at most {expect.max_chars}"))
    letters = sum(1 for character in text if character.isalpha())
    if text and letters / len(text) < 0.6:
        found.append(Violation("not prose", "too few letters"))
    return found


def _listing(text: str) -> list[Violation]:
    """A beat must say what happens: not a list of names and things, not one phrase said twice."""
    tokens = [word.lower() for word in words(text)]
    trigrams = [tuple(tokens[index : index + 3]) for index in range(len(tokens) - 2)]
    if len(trigrams) != len(set(trigrams)):
        return [Violation("repetition", "a phrase is said twice")]
    if text.count(",") >= 3 and len(tokens) < 4 * text.count(","):
        return [Violation("not a sentence", "a list of things, not what happens")]
    return []


def _translation(text: str, expect: Expectations) -> list[Violation]:
    found = []
    if not text.strip():
        return [Violation("empty", "the translation is empty")]
    if expect.source:
        ratio = len(text) / max(1, len(expect.source))
        if not 0.25 <= ratio <= 3.0:
            found.append(Violation("length", f"{ratio:.2f} times the length of the English"))
        if text.strip().lower() == expect.source.strip().lower():
            found.append(Violation("untranslated", "it is the English text"))
    if expect.script and script_share(text, expect.script) < 0.5:
        found.append(Violation("script", f"less than half of its letters are in the language's script ({expect.script[0].title()})"))
    if not sentences(text) and len(words(expect.source)) > 8:
        found.append(Violation("sentences", "no complete sentence"))
    return found


def _mentions(lowered: str, word: str) -> bool:
    return re.search(r"(?<!\w)" + re.escape(word.lower()) + r"(?!\w)", lowered) is not None


def _stems(words_: tuple[str, ...]) -> list[str]:
    """Loose stems, so 'kites' and 'kite', 'lost' and 'losing' count as the same idea."""
    return [word[: max(4, len(word) - 2)] if len(word) > 5 else word for word in words_]


def is_language(text: str) -> bool:
    """Whether a caption reads as language (a tiny random or failing vision model writes fragments instead):
    enough words, the little words every English sentence has, letters rather than symbols, no machinery."""
    found = words(text)
    if len(found) < 3:
        return False
    little = sum(1 for word in found if word.lower() in STOPWORDS)
    letters = sum(1 for character in text if character.isalpha() or character.isspace())
    return little / len(found) >= 0.15 and letters / max(1, len(text)) >= 0.85 and not _repetition(text) and not MACHINERY_CHARACTERS.search(text)


def best(verdicts: list[Verdict]) -> Verdict | None:
    """The usable verdict with the fewest soft misses (the earliest among equals), or None."""
    usable = [verdict for verdict in verdicts if verdict.usable]
    return min(usable, key=lambda verdict: verdict.misses) if usable else None
