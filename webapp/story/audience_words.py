"""Words that do not belong in a book for its audience, beside the blocked words (pure data and lookups).

The blocked words (`shared.blocked_words`) never reach any book. These are milder: ordinary words for an adult's
novel that a picture book for a five-year-old should not carry (a bar, whisky, a cigarette, a casino, a dagger).
A generated piece that uses one is written again, then replaced by a safe fallback; a word the reader asked for
themselves (in the idea or the brand message) stays allowed.

The lists are a starting point, not a policy: `FABULA_AUDIENCE_WORDS` replaces them, as a JSON object from audience
(`young-children`, `children`, `preteens`, `teens`, `adults`) to a list of words or phrases. Matching is the
blocked words' matching: whole words, any case, phrases across any spacing.
"""

from __future__ import annotations

from webapp.story.options import Audience

_DRINK_AND_SMOKE = (
    "alcohol", "alcoholic", "beer", "beers", "wine", "wines", "whiskey", "whisky", "vodka", "rum", "gin", "tequila",
    "liquor", "booze", "cocktail", "cocktails", "drunken", "got drunk", "tipsy", "hangover", "pub", "pubs", "tavern",
    "saloon", "at the bar", "into the bar", "bartender", "cigarette", "cigarettes", "cigar", "cigars", "tobacco",
    "smoking a", "vape", "casino", "gambling", "gamble", "bet money", "lottery ticket",
)
# Phrases rather than words where the word has an innocent sense in a picture book ("the wind died down", "a
# shooting star", "a bar of chocolate", "a green shoot").
_WEAPONS_AND_HARM = (
    "weapon", "weapons", "knife fight", "stabbed", "stab", "shot him", "shot her", "shot them", "shot at", "blood",
    "bloody", "bleeding", "dead body", "was killed", "funeral", "revolver", "ammunition", "explosion", "horror",
    "monster attack",
)
_YOUNGEST_ONLY = ("sword", "swords", "dagger", "daggers", "axe", "spear", "arrows", "cannon", "ghost", "ghosts", "demon", "devil", "zombie", "skeleton")
_ROMANCE = ("lover", "lovers", "seduce", "seductive", "flirt", "flirting", "kissing", "make out", "dating", "boyfriend", "girlfriend")

DEFAULT_AUDIENCE_WORDS: dict[Audience, tuple[str, ...]] = {
    Audience.young_children: (*_DRINK_AND_SMOKE, *_WEAPONS_AND_HARM, *_YOUNGEST_ONLY, *_ROMANCE),
    Audience.children: (*_DRINK_AND_SMOKE, *_WEAPONS_AND_HARM, *_ROMANCE),
    Audience.preteens: (*_DRINK_AND_SMOKE, "dead body", "ammunition", "seduce", "seductive"),
    Audience.teens: ("cocaine", "seduce", "seductive"),
    Audience.adults: (),
}


def audience_words(audience: Audience, configured: dict[str, list[str]] | None = None, *, allowed_text: str = "") -> tuple[str, ...]:
    """The words kept out of a book for `audience`: the configured list (FABULA_AUDIENCE_WORDS) where one is set
    for it, else the default; minus any word the reader used in `allowed_text` (their idea, their brand)."""
    from shared.blocked_words import find_blocked

    configured_words = (configured or {}).get(audience.value)
    words = tuple(configured_words) if configured_words is not None else DEFAULT_AUDIENCE_WORDS[audience]
    if allowed_text.strip():
        words = tuple(word for word in words if find_blocked(allowed_text, (word,)) is None)
    return tuple(word.lower() for word in words if word.strip())
