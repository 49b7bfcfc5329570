"""BENCHMARK ONLY: the latency stand-in LLM's plain-text answers (pure functions).

The stand-in answers the way an instruct model that follows the writer's prompts would, so Fabula's rules
(webapp/story/rules.py) accept the answers and the benchmark times the pipeline's normal path rather than its
regenerations and fallbacks. It reads only what a model reads, the last user message:

- a numbered plan (the prompt shows `Title: …`, `Characters: …` or `1. …` lines): the labelled title and
  characters lines it shows, then one numbered line per asked-for page, each one sentence naming a character;
- a translation ("Translate …"): a pseudo-translation, every word but the characters' names respelt in the
  letters of the language's own name (`Français`, `한국어`), so its length and script are those of a translation;
- a title ("… title only"): a few capitalised words; a beat ("… one short sentence …"): one sentence;
- anything else (a page, a rewrite): readable sentences of about `chars` characters naming the characters.

The characters are the names the prompt gives ("The main characters are Mia and Leo.", "Use the names …").
The words come from small lists, picked so that no two sentences of one answer share more than a few words
(the rules reject a beat that repeats another, or prose that loops).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

DEFAULT_NAME = "Pip"
PLAN_PLACEHOLDER = re.compile(r"^\s*(\d{1,2})\.\s*…\s*$", re.MULTILINE)
LABEL_PLACEHOLDER = re.compile(r"^\s*(Title|Characters):\s*", re.MULTILINE)
MORE_PAGES = re.compile(r"\bfor (\d{1,2}) more page", re.IGNORECASE)
NAMES = re.compile(r"(?:main characters are|the names)\s+(?P<names>[^.\n]+?)(?:\s+as they are|\.)", re.IGNORECASE)
SUBJECT = re.compile(r"\bfor [a-z ]+ about (?P<names>[^.\n]+)\.")  # the title prompt names the characters first
IDEA = re.compile(r"The reader's idea for the story: \"(?P<idea>[^\"]*)\"")
TARGET_LANGUAGE = re.compile(r"\binto (?P<name>[^()\n]+?) \((?P<native>[^)\n]+)\)")
NOW_LINE = re.compile(r"^Now: (?P<beat>.+)$", re.MULTILINE)
QUOTED_BEAT = re.compile(r"about this: \"(?P<beat>[^\"]*)\"")
WORD = re.compile(r"[^\W\d_]+", re.UNICODE)

VERBS = ("found", "followed", "painted", "carried", "chased", "built", "opened", "shared", "climbed", "mended", "watched",
         "counted", "lifted", "noticed", "greeted", "planted", "rolled", "tasted", "polished", "wrapped", "dropped",
         "borrowed", "spotted")
ADJECTIVES = ("silver", "tiny", "sleepy", "golden", "hidden", "muddy", "bright", "wobbly", "striped", "dusty", "velvet",
              "paper", "glowing", "crooked", "purple", "gentle", "frosty", "curious", "humming", "speckled", "ancient",
              "slippery", "cosy")
NOUNS = ("lantern", "kite", "acorn", "boat", "map", "teapot", "feather", "drum", "shell", "key", "umbrella", "ribbon",
         "bucket", "basket", "compass", "blanket", "pebble", "bell", "snail", "mitten", "ladder", "cookie", "button")
PLACES = ("beside the river", "under the old bridge", "in the quiet garden", "at the top of the hill", "near the bakery",
          "behind the red barn", "along the sandy shore", "inside the hollow tree", "across the meadow", "by the window",
          "on the rooftop", "in the busy market", "at the edge of the pond", "past the lighthouse", "under the stars",
          "through the tall grass", "beside the warm fire", "near the train station", "in the snowy woods",
          "by the little harbour", "on the mossy stones", "around the corner", "behind the library")
LOOKS = ("a curious child in a yellow raincoat with curly hair", "a small brown dog with a red collar",
         "a tall grandmother with round glasses and a green scarf", "a freckled boy in blue overalls",
         "a grey cat with white paws", "a cheerful girl with braids and a striped jumper")
# Clauses between one beat's first clause and the next beat's: more than a 200-character beat holds.
BEAT_STRIDE = 6
# Words of a reader's idea the rules would take for talk about the book, never woven into the prose.
ABOUT_THE_BOOK = frozenset("page pages book story stories tale chapter picture reader readers photo illustration".split())


@dataclass(frozen=True)
class TextReply:
    """One plain-text answer: its text, the kind of request it answers (the call's name in the log), and what it
    is about (a page's beat, a translation's source, a plan's own text), so a timeline can tell the calls of one
    page apart and read when each line of a plan arrived."""

    text: str
    kind: str
    subject: str = ""


def request_kind(prompt: str) -> str:
    """"outline", "translation", "title", "beat" or "page", from the wording of the prompt."""
    if prompt.lstrip().startswith("Translate"):
        return "translation"
    if PLAN_PLACEHOLDER.search(prompt) or LABEL_PLACEHOLDER.search(prompt):
        return "outline"
    if re.search(r"\btitle only\b|\bshort title\b", prompt, re.IGNORECASE):
        return "title"
    if re.search(r"\bone (?:short )?sentence\b", prompt, re.IGNORECASE):
        return "beat"
    return "page"


def names_in(prompt: str) -> tuple[str, ...]:
    match = NAMES.search(prompt) or SUBJECT.search(prompt)
    if not match:
        return (DEFAULT_NAME,)
    names = tuple(part.strip() for part in re.split(r",\s*|\s+and\s+", match.group("names")) if part.strip())
    return names or (DEFAULT_NAME,)


def idea_words(prompt: str) -> list[str] | None:
    """The reader's idea as a few plain words (the opening page must keep the idea): its first eight words, or
    its first long word when those would read as talk about the book."""
    match = IDEA.search(prompt)
    if not match:
        return None
    found = WORD.findall(match.group("idea"))
    if not found:
        return None
    opening = [word if index else word.lower() for index, word in enumerate(found[:8])]
    if not ABOUT_THE_BOOK & {word.lower() for word in opening}:
        return opening
    return next(([word.lower()] for word in found if len(word) > 3 and word.lower() not in ABOUT_THE_BOOK), None)


def reply_to(prompt: str, *, chars: int, beat_chars: int, seed: int = 0) -> TextReply:
    """The stand-in's answer to `prompt` (the last user message); `seed` varies the words between calls."""
    kind = request_kind(prompt)
    names = names_in(prompt)
    if kind == "outline":
        text = plan(prompt, names, beat_chars, seed)
        return TextReply(text, kind, text)
    if kind == "translation":
        source = prompt.split("\n\n", 1)[1] if "\n\n" in prompt else prompt
        return TextReply(pseudo_translation(source, prompt, names), kind, source)
    if kind == "title":
        return TextReply(title(names, seed), kind)
    if kind == "beat":
        return TextReply(sentence(names[seed % len(names)], 3 * (seed % 97), beat_chars), kind)
    beat = NOW_LINE.search(prompt) or QUOTED_BEAT.search(prompt)
    return TextReply(prose(names, chars, seed, idea_words(prompt)), kind, beat.group("beat") if beat else "")


# ---- sentences -----------------------------------------------------------------------------------------
def clause(index: int) -> tuple[list[str], list[str]]:
    """(['found', 'the', 'silver', 'lantern'], ['beside', 'the', 'river']): clauses with nearby indexes share no verb,
    adjective, noun or place. A sentence may end after either part."""
    turn = index // len(VERBS)
    verb = VERBS[index % len(VERBS)]
    adjective = ADJECTIVES[(5 * index + 3 * turn) % len(ADJECTIVES)]
    noun = NOUNS[(7 * index + turn) % len(NOUNS)]
    place = PLACES[(11 * index + 2 * turn) % len(PLACES)]
    return [verb, "the", adjective, noun], place.split()


def sentence(name: str, index: int, chars: int, *, opening: list[str] | None = None) -> str:
    """One sentence of at most `chars` characters (one clause when even that is longer), starting with `name` and
    ending with a full stop: clauses from `index` on, joined by 'and'."""
    words = [name, *(opening or [])]
    stream = 0
    while True:
        action, place = clause(index + stream)
        parts = [action, place] if stream == 0 else [["and", *action], place]
        for part in parts:
            if len(" ".join([*words, *part])) + 1 > chars and len(words) > 1 + len(opening or []):
                return " ".join(words) + "."
            words += part
        stream += 1


def prose(names: tuple[str, ...], chars: int, seed: int, idea: list[str] | None) -> str:
    """Two to five sentences, together about `chars` characters, each naming a character in turn; the first
    carries the reader's idea when there is one."""
    count = min(5, max(2, round(chars / 70)))
    sentences: list[str] = []
    for number in range(count):
        room = (chars - len(" ".join(sentences))) // (count - number) - 1
        opening = ["thought", "about", *idea, "and"] if idea and number == 0 else None
        sentences.append(sentence(names[number % len(names)], 5 * (seed % 97) + 3 * number, max(24, room), opening=opening))
    return " ".join(sentences)


def title(names: tuple[str, ...], seed: int) -> str:
    return f"{names[0]} and the {ADJECTIVES[seed % len(ADJECTIVES)].title()} {NOUNS[(3 * seed) % len(NOUNS)].title()}"


def plan(prompt: str, names: tuple[str, ...], beat_chars: int, seed: int) -> str:
    """The labelled lines the prompt shows, then one numbered beat per page it asks for."""
    numbers = [int(number) for number in PLAN_PLACEHOLDER.findall(prompt)] or [1]
    first, last = min(numbers), max(numbers)
    more = MORE_PAGES.search(prompt)
    if more:
        last = max(last, first + int(more.group(1)) - 1)
    lines = []
    labels = {label.lower() for label in LABEL_PLACEHOLDER.findall(prompt)}
    if "title" in labels:
        lines.append(f"Title: {title(names, seed)}")
    if "characters" in labels:
        lines.append("Characters: " + "; ".join(f"{name} ({LOOKS[index % len(LOOKS)]})" for index, name in enumerate(names)))
    for page in range(first, last + 1):
        lines.append(f"{page}. " + sentence(names[(page - 1) % len(names)], BEAT_STRIDE * (page - 1) + 3 * (seed % 97), beat_chars))
    return "\n".join(lines)


# ---- translations --------------------------------------------------------------------------------------
# Common words of a few languages written in the Latin alphabet, where the script alone says nothing and the
# writer's language identifier must recognise the answer: a pseudo-translation drawn from them reads as the language.
LATIN_WORDS = {
    "French": "le la les un une et de du dans sur avec pour qui est sont était petit grand maison chat chien jardin soleil "
              "vent ami amie cerf-volant rouge bleu nuit jour porte ciel arbre rivière chemin",
    "Spanish": "el la los las un una y de del en con para que es son era pequeño grande casa gato perro jardín sol viento "
               "amigo amiga cometa rojo azul noche día puerta cielo árbol río camino",
    "German": "der die das ein eine und von mit für auf ist sind war klein groß Haus Katze Hund Garten Sonne Wind Freund "
              "Freundin Drachen rot blau Nacht Tag Tür Himmel Baum Fluss Weg nicht auch",
    "Italian": "il la gli le un una e di del con per che è sono era piccolo grande casa gatto cane giardino sole vento amico "
               "amica aquilone rosso blu notte giorno porta cielo albero fiume strada",
    "Portuguese": "o a os as um uma e de do da com para que é são era pequeno grande casa gato cão jardim sol vento amigo "
                  "amiga pipa vermelho azul noite dia porta céu árvore rio caminho",
}


def pseudo_translation(source: str, prompt: str, names: tuple[str, ...]) -> str:
    """`source` with every word but the names replaced: by common words of the target language where a list is
    here (`LATIN_WORDS`), else respelt in the letters of the language's own name; punctuation, spacing and capitals
    kept, so the answer is about as long as the source and in the right script."""
    target = TARGET_LANGUAGE.search(prompt)
    vocabulary = LATIN_WORDS.get(target.group("name").strip()) if target else None
    words = vocabulary.split() if vocabulary else []
    alphabet = sorted({letter for letter in (target.group("native") if target else "autre").lower() if letter.isalpha()})
    kept = {name.lower() for name in names}

    def respell(match: re.Match[str]) -> str:
        word = match.group(0)
        if word.lower() in kept:
            return word
        digest = hashlib.sha256(word.lower().encode()).digest()
        if words:
            letters = words[int.from_bytes(digest[:4], "little") % len(words)]
        else:
            letters = "".join(alphabet[digest[index % len(digest)] % len(alphabet)] for index in range(len(word)))
        return letters[:1].upper() + letters[1:] if word[:1].isupper() else letters

    return WORD.sub(respell, source)
