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
from webapp.story.language_check import wrong_language


class Piece(Enum):
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
    language: str | None = None  # for a translation: the language code it must be written in
    must_keep: bool = False  # the names and the idea are hard rules here (the opening page), soft elsewhere
    audience_words: tuple[str, ...] = ()  # words kept out of a book for its audience (`audience_words`)
    opening: str = ""  # for a title: the story's first line, which a title must not merely copy
    book_title: str = ""  # for a page: the book's title, which a page must not begin by repeating


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
# The model talking about its own work instead of writing the piece ("Here is the translation", "I've made a lot
# of changes", "In German, the word for magic is ...", "The story begins with ...").
META_TALK = re.compile(
    r"\b(here\s+is|here'?s|below\s+is)\s+(the|my|your|a)\s+(\w+\s+)?(translation|text|story|version|title|rewrite)|"
    r"\bi(\s+have|'ve|\s+had)\s+(made|changed|translated|rewritten|revised|adjusted|corrected|kept|tried|added|removed)\b|"
    r"\bi\s+(translated|rewrote|revised|adjusted|corrected)\b|\btranslat(e|ed|ion|ions|ing)\b|\bthe\s+word\s+for\b|"
    r"\bgrammatical(ly)?\s+correct|\bmore\s+polished\b|\b(text|translation|version)\s+is\s+now\b|\bflows?\s+better\b|"
    r"\blet\s+me\s+know\b|\bas\s+requested\b|"
    r"\b(the\s+)?(story|tale|book)\s+(begins|starts|is\s+about)\b|"
    r"\bin\s+(english|german|spanish|french|italian|portuguese|dutch|russian|chinese|japanese|korean|arabic)\s*[,:]|"
    r"übersetz\w*|traducci[óo]n\w*|traduction\w*|traduzion\w*|tradu[çc][ãa]o|vertaling\w*|перевод\w*|翻译|翻訳|번역",
    re.IGNORECASE,
)
# Emoji and other pictographs: no book font draws them, and a run of them is not prose.
EMOJI = re.compile(
    "[\U0001F000-\U0001FAFF\u2300-\u23FF\u2600-\u27BF\u2B00-\u2BFF\uFE0F\u200D\u20E3\U000E0020-\U000E007F]+"
)
# A title may not end on a word that needs another after it ("She's a brave a", "Mia and the").
DANGLING = frozenset("a an the and or but of to at by for with from into onto as its their our your my very than".split())
# Abbreviations whose full stop does not end a sentence ("Mr. Fox and the Moon").
ABBREVIATIONS = re.compile(r"\b(Mr|Mrs|Ms|Dr|St|Mt|Jr|Sr|Prof|Capt|Lt|Sgt|Gen|Col)\.", re.IGNORECASE)
TITLE_MAX_WORDS = 10
# A title about the book rather than the story ("8 Pages of the Endless Shadows", "My Picture Book").
BOOK_WORDS = re.compile(r"\b(pages?|chapters?|picture\s*book|storybook|illustrat\w*)\b", re.IGNORECASE)

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
    text = re.sub(r"[ \t]+([,.;:!?])", r"\1", EMOJI.sub(" ", text))
    if piece in (Piece.title, Piece.beat, Piece.look):
        text = next((line for line in (line.strip() for line in text.splitlines()) if line), "")
    lines = [LEADING_LABEL.sub("", line.strip(), count=1).strip() for line in text.splitlines()]
    text = " ".join(line for line in lines if line)
    text = re.sub(r"\s+", " ", text).strip()
    text = _unwrapped(text)
    if piece is Piece.title:
        text = text.rstrip(".").strip()
        if len(text) > max_chars:
            # Cut at a word boundary: a title never ends in half a word.
            text = text[: max_chars + 1].rsplit(" ", 1)[0] if " " in text[:max_chars] else text[:max_chars]
        return _unwrapped(text.strip(" ,;:-–—"))
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
    unsuitable = [word for word in expect.audience_words if find_blocked(lowered, (word,))]
    found += [Violation("audience", f"{word!r} does not belong in a book for this audience") for word in unsuitable[:1]]
    found += _echo(text, expect.instructions, expect.material)
    found += _repetition(text)
    talk = META_TALK.search(_outside_quotes(text) if piece in (Piece.page, Piece.beat) else text)
    if talk and piece is not Piece.look:
        found.append(Violation("talk about the work", f"it talks about its own work ({talk.group(0)!r}) instead of being the {piece.value}"))
    if piece is Piece.title:
        found += _title(text, expect)
    elif piece is Piece.look:
        if not 1 <= len(words(text)) <= 24:
            found.append(Violation("look length", "a look is a short phrase of 1–24 words"))
    else:
        found += _prose(text, piece, expect)
    if piece is Piece.page and _begins_with(text, expect.book_title):
        found.append(Violation("title", "it begins by repeating the book's title"))
    if piece in (Piece.page, Piece.beat):
        found += _renamed(text, expect)
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
    machinery = MACHINERY_CHARACTERS.search(text)
    if machinery:
        found.append(Violation("machinery", f"it contains {machinery.group(0)!r}"))
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
    found: list[Violation] = []
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
    elif expect.language:
        wrong = wrong_language(text, expect.language, names=expect.names)
        if wrong:
            found.append(Violation("language", wrong))
    if not sentences(text) and len(words(expect.source)) > 8:
        found.append(Violation("sentences", "no complete sentence"))
    return found


QUOTED = re.compile(r"\"[^\"]*\"|“[^”]*”|«[^»]*»|„[^“”]*[“”]|‘[^’]*’(?!\w)")


def _outside_quotes(text: str) -> str:
    """The narration without what characters say: "I've made you a present," said Mia is a story, not talk about
    the work."""
    return QUOTED.sub(" ", text)


def _begins_with(text: str, title: str) -> bool:
    """The text starts with the title's words (a title of two words or more: one word may well be a name)."""
    if len(words(title)) < 2:
        return False
    flat = " ".join(words(text)).lower()
    return flat.startswith(" ".join(words(title)).lower())


def _title(text: str, expect: Expectations) -> list[Violation]:
    """A title is a short noun phrase or one short sentence: no sentence break inside, no cut or dangling end, not
    a label, not the story's first line."""
    found = []
    found_words = words(text)
    if not 1 <= len(found_words) <= TITLE_MAX_WORDS:
        found.append(Violation("title length", f"a title has 1–{TITLE_MAX_WORDS} words, this has {len(found_words)}"))
    if re.search(r"\b(title|untitled)\b", text, re.IGNORECASE) or text.lower().strip() in {"story", "a story", "the story"} or text.endswith(":"):
        found.append(Violation("title", "it is a label, not a title"))
    book_word = BOOK_WORDS.search(text)
    if book_word:
        found.append(Violation("title", f"it talks about the book ({book_word.group(0)!r})"))
    if re.search(r"[.!?。！？;]\s*\S", ABBREVIATIONS.sub(r"\1", text).rstrip(".!?。！？ ")):
        found.append(Violation("title", "it holds more than one sentence"))
    if found_words and found_words[-1].lower() in DANGLING:
        found.append(Violation("title", f"it ends on {found_words[-1]!r}, as if cut off"))
    opening = [word.lower() for word in words(expect.opening)]
    mine = [word.lower() for word in found_words]
    if len(mine) >= 4 and opening[: len(mine)] == mine:
        found.append(Violation("title", "it copies the story's first line"))
    return found


# Capitalised words that sit where a name could and are not one: family words, titles, and the like.
NOT_NAMES = frozenset(
    "mum mom mummy mommy mama mother dad daddy papa father grandma granny grandpa grandad nana nan aunt auntie uncle "
    "mr mrs miss ms mister madam sir lady lord dr doctor sister brother baby santa king queen prince princess captain "
    "professor teacher officer god monday tuesday wednesday thursday friday saturday sunday january february march "
    "april may june july august september october november december earth moon sun mars".split()
)


def _renamed(text: str, expect: Expectations) -> list[Violation]:
    """A character called by a near-miss of their name ("Aki", "Aisha" or "Aki-Dana" for Aiko) has been renamed by
    the model: a soft rule, so the writer asks again and keeps the best answer, without forcing a fallback.

    Capitalised words count inside a sentence, and at its start only where they read as a name (a hyphenated
    name, or one followed by a comma: "Aki-Dana, the brave Aiko"); words the material uses, family words and
    titles (`NOT_NAMES`) do not count, and a word that starts with the full name is the name inflected ("Aikos",
    "Mia's")."""
    if not expect.names:
        return []
    known = {word.lower() for word in words(expect.material)} | {word.lower() for name in expect.names for word in words(name)}
    for sentence in sentences(text) or [text]:
        for match in WORD.finditer(sentence):
            word = match.group(0)
            if not word[:1].isupper():
                continue
            if not sentence[: match.start()].strip(" \"'“‘«(") and "-" not in word and not sentence[match.end() :].startswith(","):
                continue  # the first word of a sentence is capitalised anyway
            for part in word.split("-"):
                lowered = part.lower()
                if lowered in known or lowered in NOT_NAMES or len(part) < 3:
                    continue
                for name in expect.names:
                    given = name.lower()
                    if not (lowered.startswith(given) or given.startswith(lowered)) and _near(lowered, given):
                        return [Violation("names", f"it calls {name} {word!r}", hard=False)]
    return []


def _near(word: str, name: str) -> bool:
    """Close enough to be the same name misspelt: the same first letter, and for a name of three letters one edit
    apart (Mia: "Mya", not "Max"); for longer names two edits, or the same first two letters and a similar length
    (Aiko: "Aki", "Aisha")."""
    if word[0] != name[0]:
        return False
    if len(name) <= 3:
        return len(word) <= 4 and _edits(word, name) <= 1
    if word[:2] == name[:2] and abs(len(word) - len(name)) <= 2:
        return True
    return _edits(word, name) <= 2


def _edits(first: str, second: str) -> int:
    previous = list(range(len(second) + 1))
    for row, left in enumerate(first, start=1):
        current = [row]
        for column, right in enumerate(second, start=1):
            current.append(min(previous[column] + 1, current[column - 1] + 1, previous[column - 1] + (left != right)))
        previous = current
    return previous[-1]


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
