"""Safe words for a piece the model could not write within the rules (pure functions).

When a title, a page's beat or a page's text still breaks the rules after its regenerations, the book uses these
instead: a plain story arc (a beginning, an adventure that grows, a turn, a happy ending) told with the book's own
characters and the reader's idea, so the book stays a story and never shows machinery. They are deliberately
simple; the writer logs every use, and the job's saved steps mark the pieces that are fallbacks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum


class Phase(str, Enum):
    beginning = "beginning"
    adventure = "adventure"
    turn = "turn"
    ending = "ending"


def phase_of(page: int, pages: int) -> Phase:
    """Where page `page` (1-based) of `pages` sits in the arc."""
    if pages == 1:
        return Phase.ending
    if page == 1:
        return Phase.beginning
    if page == pages:
        return Phase.ending
    if page == pages - 1 and pages >= 4:
        return Phase.turn
    return Phase.adventure


PHASE_GUIDANCE = {
    Phase.beginning: "the characters and their world are introduced, and something new appears",
    Phase.adventure: "the adventure goes on and something gets in the way",
    Phase.turn: "the characters find a clever, kind way through the problem",
    Phase.ending: "the story ends happily and warmly",
}


@dataclass(frozen=True)
class StoryFacts:
    """What the fallbacks know of the book: its characters, and the reader's idea as a short noun phrase."""

    names: tuple[str, ...]
    idea: str | None = None

    @property
    def hero(self) -> str:
        return self.names[0] if self.names else "Pip"

    @property
    def company(self) -> str:
        """'Mia', 'Mia and Leo', 'Mia, Leo and Sam'."""
        names = list(self.names) or [self.hero]
        return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]

    @property
    def thing(self) -> str:
        return self.idea or "a small mystery"


def short_idea(idea: str | None, max_words: int = 10) -> str | None:
    """The reader's idea as a short phrase: its first sentence, at most `max_words` words, no final stop."""
    if not idea:
        return None
    first = re.split(r"(?<=[.!?])\s", idea.strip(), maxsplit=1)[0]
    kept = " ".join(first.split()[:max_words]).strip(" .!?,;:")
    if not kept:
        return None
    first, _, rest = kept.partition(" ")
    if first in _LEADING_WORDS:
        kept = first.lower() + (" " + rest if rest else "")
    return kept


_LEADING_WORDS = frozenset("A An The My Our Some One Two His Her Their Its".split())


def title(facts: StoryFacts) -> str:
    if facts.idea and len(facts.idea.split()) <= 5:
        words = facts.idea.split()
        if words[0].lower() in ("a", "an", "some"):
            words[0] = "the"
        return f"{facts.hero} and " + " ".join(word if word[:1].isupper() or index == 0 and word == "the" else word.capitalize() for index, word in enumerate(words))
    return f"{facts.hero}'s Big Day"


_BEATS = {
    Phase.beginning: "{company} began an ordinary day, until {thing} changed everything.",
    Phase.adventure: (
        "{company} followed the trail of {thing} to somewhere new.",
        "A problem with {thing} made {company} stop and think.",
        "{company} asked a friend for help with {thing}.",
        "The way grew harder, but {company} kept going.",
    ),
    Phase.turn: "{company} found a clever and kind way to solve the problem of {thing}.",
    Phase.ending: "{company} came home happy, and {thing} became a memory to share again and again.",
}

_PAGES = {
    Phase.beginning: (
        "{beat} It was a bright morning, and {company} {were} ready for anything. "
        "Nobody knew yet how special this day would be."
    ),
    Phase.adventure: (
        "{beat} Step by step, {company} went on, looking and listening. "
        "Every sound and colour around them felt like a clue."
    ),
    Phase.turn: (
        "{beat} {company} took a deep breath and tried one more time, together. "
        "This time their idea worked, and they cheered."
    ),
    Phase.ending: (
        "{beat} When the evening came, {company} smiled at everything that had happened. "
        "It had been the best adventure of all, and it was only the beginning."
    ),
}


def beat(page: int, pages: int, facts: StoryFacts) -> str:
    phase = phase_of(page, pages)
    template = _BEATS[phase]
    if isinstance(template, tuple):
        template = template[(page - 2) % len(template)]
    return _fill(template, facts)


def page_text(beat_text: str, page: int, pages: int, facts: StoryFacts) -> str:
    """A page's text around its beat: the beat first, then two sentences fitting its place in the arc."""
    sentence = beat_text.strip()
    if sentence and sentence[-1] not in ".!?":
        sentence += "."
    return _fill(_PAGES[phase_of(page, pages)], facts, beat=sentence)


def _fill(template: str, facts: StoryFacts, **extra: str) -> str:
    were = "were" if len(facts.names) > 1 else "was"
    text = template.format(company=facts.company, thing=facts.thing, hero=facts.hero, were=were, **extra)
    return text[0].upper() + text[1:]
