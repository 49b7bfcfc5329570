"""Words that never reach a book: the default list, and finding and removing them in any text.

`FABULA_BLOCKED_WORDS` replaces the default list (set it to a comma-separated list or a JSON list; `[]` turns
the list off). A word matches as a whole word in any case ("Gun" and "gun", not "begun"); a phrase matches with
any spacing between its words. The list is applied to every field a reader writes (refused with a 400 that names
the field) and to every generated text (written again, then the word removed), so no listed word is printed,
shown in the reader or spoken.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from shared.errors import InvalidRequest

# Clear-cut words for a book handed to a child: profanity, sexual words, graphic violence, weapons, drugs.
# Kept short on purpose: ordinary story words ("dead leaves", "a witch", "a dragon's fire") stay possible.
DEFAULT_BLOCKED_WORDS: tuple[str, ...] = (
    # profanity
    "fuck", "fucking", "fucked", "shit", "shitty", "bitch", "bastard", "asshole", "cunt", "dick", "cock",
    "pussy", "motherfucker", "slut", "whore", "wanker", "bollocks",
    # sexual
    "sex", "sexy", "sexual", "porn", "porno", "pornography", "nude", "nudes", "naked", "erotic", "orgasm",
    "genitals", "penis", "vagina", "breasts", "rape", "raped", "rapist", "molest",
    # graphic violence and weapons
    "murder", "murdered", "murderer", "kill", "killed", "killing", "killer", "suicide", "gore", "gory",
    "bloodbath", "massacre", "slaughter", "behead", "decapitate", "dismember", "torture", "corpse", "corpses",
    "gun", "guns", "pistol", "rifle", "shotgun", "bullet", "bullets", "grenade", "bomb", "bombs", "terrorist",
    # drugs
    "cocaine", "heroin", "meth", "methamphetamine", "crack pipe", "marijuana", "weed", "overdose",
    # hate
    "nazi", "swastika",
)


@lru_cache(maxsize=256)
def _pattern(word: str) -> re.Pattern[str]:
    spaced = r"\s+".join(re.escape(part) for part in word.split())
    return re.compile(r"(?<!\w)" + spaced + r"(?!\w)", re.IGNORECASE)


def find_blocked(text: str, words: Iterable[str]) -> str | None:
    """The first listed word that `text` contains, or None."""
    for word in words:
        if word and _pattern(word.lower()).search(text):
            return word
    return None


def remove_blocked(text: str, words: Iterable[str]) -> str:
    """`text` with every listed word taken out and the spacing mended."""
    for word in words:
        if word:
            text = _pattern(word.lower()).sub("", text)
    text = re.sub(r"[ \t]{2,}", " ", text)
    return re.sub(r"\s+([,.;:!?])", r"\1", text).strip()


def refuse_blocked(text: str | None, field: str, blocked_words: tuple[str, ...]) -> None:
    """A reader's text with a blocked word is refused, naming the field and the rule, before any work starts."""
    word = find_blocked(text or "", blocked_words)
    if word is not None:
        raise InvalidRequest(
            f"`{field}` contains {word!r}, a word this server keeps out of its books (the blocked-words rule, FABULA_BLOCKED_WORDS). "
            "Please say it another way.",
            param=field,
        )

