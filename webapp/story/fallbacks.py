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


# "finds a secret door", "to find a missing star": the thing an idea is about, after the verb that reaches for it.
_OBJECT = re.compile(
    r"(?:\b(?P<verb>\w+)\s+)?\b(?:a|an|the|some|one)\s+(?P<phrase>(?:[^\W\d_]+\s+){0,2}[^\W\d_]+?)"
    r"(?=\s+(?:in|on|at|with|from|to|of|for|under|near|inside|behind|who|that|which|and|but|by)\b|[.,;:!?]|$)",
    re.IGNORECASE,
)
_NOT_VERBS = frozenset("in on at with from to of for under near inside behind and but by is are was were".split())


def idea_object(idea: str | None) -> str | None:
    """The thing a reader's idea is about ("secret door" in "a girl who finds a secret door in an old temple"):
    the last article phrase that follows a verb, else the last article phrase, else None."""
    if not idea:
        return None
    found = [(bool(match.group("verb")) and match.group("verb").lower() not in _NOT_VERBS, match.group("phrase")) for match in _OBJECT.finditer(idea)]
    after_verbs = [phrase for is_verb, phrase in found if is_verb]
    chosen = (after_verbs or [phrase for _, phrase in found] or [None])[-1]
    return chosen.strip() if chosen else None


def title(facts: StoryFacts) -> str:
    """A safe title from the names and the idea: "Aiko and the Secret Door", "Nova and the Missing Star"."""
    thing = idea_object(facts.idea)
    if thing is None and facts.idea and len(facts.idea.split()) <= 2:  # "dragons", "swimming lessons"
        thing = facts.idea
    if thing:
        return f"{facts.hero} and the " + " ".join(word if word[:1].isupper() else word.capitalize() for word in thing.split())
    return f"{facts.hero}'s Big Day"


_BEATS = {
    Phase.beginning: ("{company} began an ordinary day, until {thing} changed everything.",),
    Phase.adventure: (
        "{company} followed the trail of {thing} to somewhere new.",
        "A problem with {thing} made {company} stop and think.",
        "{company} asked a friend for help with {thing}.",
        "The way grew harder, but {company} kept going.",
        "{company} found a clue about {thing} hidden in a quiet corner.",
        "A sudden gust of wind sent {company} running after {thing}.",
        "{company} shared a snack and made a new plan.",
        "Something small and shiny pointed {company} the right way.",
        "{company} crossed a little bridge and listened to the water below.",
        "A kind stranger told {company} a story about {thing}.",
        "{company} climbed higher to see everything from above.",
        "The path split in two, and {company} had to choose.",
        "{company} heard a funny noise and went to see what it was.",
        "A locked gate stood in the way, and {company} looked for the key.",
        "{company} drew a map in the sand to remember the way.",
        "Rain began to fall, so {company} found shelter and waited.",
        "{company} met a shy animal who needed a little help.",
        "A tall wall made {company} think of a clever trick.",
        "{company} spotted footprints that led around a corner.",
        "The lights went dim, and {company} stayed close together.",
        "{company} fixed something broken with string and patience.",
        "A surprise waited behind the next door for {company}.",
    ),
    Phase.turn: ("{company} found a clever and kind way to solve the problem of {thing}.",),
    Phase.ending: ("{company} came home happy, and {thing} became a memory to share again and again.",),
}

# One closing sentence per page of a book (up to 24 pages), so no two fallback pages of one book repeat a sentence.
_FILLERS = (
    "It was a bright morning, and nobody knew yet how special this day would be.",
    "Every sound and colour around them felt like a clue.",
    "The air smelled of rain and adventure.",
    "Far away, a bird sang as if it knew the way.",
    "Their hearts beat a little faster with every step.",
    "Shadows danced on the ground, and the world felt new.",
    "A soft breeze seemed to whisper that they were close.",
    "They laughed, because even small steps count.",
    "Somewhere nearby, something was waiting to be found.",
    "The sun peeked out from behind a fluffy cloud.",
    "Each of them noticed something the other had missed.",
    "It was quiet, but not a scary kind of quiet.",
    "They remembered to look up, and to look down.",
    "A friendly cat watched them from a sunny wall.",
    "The next part of the way looked both tricky and fun.",
    "They counted to three and tried again.",
    "The trees rustled as if they were cheering.",
    "Nobody gave up, not even for a moment.",
    "Little by little, the answer came closer.",
    "Their plan was simple, and it was brave.",
    "Even the clouds seemed to slow down to watch.",
    "They held hands and smiled at each other.",
    "It felt like the whole world was on their side.",
    "And that made everything feel possible.",
)

_PAGES = {
    Phase.beginning: "{beat} {company} {were} ready for anything. {filler}",
    Phase.adventure: "{beat} {filler}",
    Phase.turn: "{beat} {company} took a deep breath and tried one more time, together. {filler}",
    Phase.ending: "{beat} When the evening came, {company} smiled at everything that had happened. {filler}",
}


def beat(page: int, pages: int, facts: StoryFacts) -> str:
    """A safe beat for page `page`: its place in the arc, and for the middle pages one of 22 turns of events (one each
    for the middle pages of a 24-page book)."""
    options = _BEATS[phase_of(page, pages)]
    return _fill(options[(page - 2) % len(options)], facts)


def page_text(beat_text: str, page: int, pages: int, facts: StoryFacts) -> str:
    """A page's text around its beat: the beat first, then sentences fitting its place in the arc; the last
    sentence is the page's own, so no two pages of a book share one."""
    sentence = beat_text.strip()
    if sentence and sentence[-1] not in ".!?":
        sentence += "."
    return _fill(_PAGES[phase_of(page, pages)], facts, beat=sentence, filler=_FILLERS[(page - 1) % len(_FILLERS)])


def _fill(template: str, facts: StoryFacts, **extra: str) -> str:
    were = "were" if len(facts.names) > 1 else "was"
    text = template.format(company=facts.company, thing=facts.thing, hero=facts.hero, were=were, **extra)
    return text[0].upper() + text[1:]
