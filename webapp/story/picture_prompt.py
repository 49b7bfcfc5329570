"""Picture prompts that fit CLIP's window by construction (pure functions).

Both SDXL text encoders read 77 tokens, 75 after the start and end tokens, and silently drop the rest. A page's
picture is built from three parts, in order of importance: the scene (what happens), the characters' looks (the
names are dropped: they mean nothing to CLIP) and the style preset. Each part is split into comma clauses; the
budget goes to the scene first, then one clause per character, then the style's details, then whatever else
fits. Low-priority clauses are dropped whole; only a part's first clause is shortened, before a phrase ("a girl |
with red hair"), or for the scene at a word, and never so that it ends on "with" or "the". The budget is counted
with `estimate_clip_tokens`, which errs high, so the real count stays inside CLIP's window.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from webapp.story.clip_tokens import CLIP_WINDOW_TOKENS, estimate_clip_tokens
from webapp.story.styles import find_style

__all__ = ["CLIP_WINDOW_TOKENS", "PicturePrompt", "estimate_clip_tokens", "picture_prompt"]

MIN_BUDGET_TOKENS = 24
SCENE_MIN_SHARE = 0.4  # the scene's least share of the budget, however much the rest would take
CHARACTER_SHARE = 0.3  # the most the characters' looks take while the scene and the style still want room
MIN_CHARACTER_TOKENS = 6
TEXT_NEGATIVES = ("text", "letters", "words", "writing", "watermark", "signature")

_CLAUSE_BREAK = re.compile(r"[,;:!?\n]+|\.(?!\d)")
# Words a shortened phrase must not end on ("a girl with"), and words a clause need not start with.
_DANGLING = frozenset(
    "a an the and or but of in on at to from with without by for into onto over under while as near behind beside "
    "his her their its my your our is are was were who that which very so then".split()
)
_LEADING = frozenset("and or but then so".split())
# A long clause is shortened before one of these: "a girl | with red hair | and a kite".
_PHRASE_STARTS = frozenset(
    "with and while wearing holding in on at near under beside behind from as who that which through across into "
    "past along among".split()
)
_MARKUP = re.compile(r"</?[A-Za-z][^<>]{0,64}>")  # <b>, </script>: tags are dropped, their text kept
_FILLER = frozenset("picture image illustration scene page".split())
_NEGATED = re.compile(r"^(?:no|without|not)\s+(.+)$")


@dataclass(frozen=True)
class PicturePrompt:
    """A picture's prompt and negative prompt, each within the token budget by `estimate_clip_tokens`.

    `shortened` names the parts ("scene", "characters", "style", "negative") that lost words to fit.
    """

    prompt: str
    negative_prompt: str
    estimated_tokens: int
    negative_estimated_tokens: int
    shortened: tuple[str, ...] = ()


def picture_prompt(
    scene: str, characters: Sequence[tuple[str, str]], style_id: str, *, budget_tokens: int = CLIP_WINDOW_TOKENS
) -> PicturePrompt:
    """The prompt for one picture: scene first, then the looks of `characters` ((name, look) pairs), then the style.

    Characters named in the scene go before the others when not all fit. "no …" clauses move to the negative
    prompt, which always steers away from text and letters. Raises ValueError for an unknown style or a budget
    under MIN_BUDGET_TOKENS.
    """
    if budget_tokens < MIN_BUDGET_TOKENS:
        raise ValueError(f"`budget_tokens` is {budget_tokens}; it must be at least {MIN_BUDGET_TOKENS} to hold a scene and a style")
    style = find_style(style_id)
    negated: list[str] = []
    scene_clauses = _clauses(scene, negated)
    looks: list[list[str]] = []
    for name, look in characters:
        looks.append(_unique(_clauses(_without_name(look, name), negated), [*scene_clauses, *_flat(looks)]))
    # A style clause the scene or a look already holds is not written twice.
    style_clauses = _unique(_clauses(style.prompt, negated), [*scene_clauses, *_flat(looks)])
    order = sorted(range(len(looks)), key=lambda index: not _mentioned(characters[index][0], scene))

    fill = _fill_prompt(scene_clauses, [looks[index] for index in order], style_clauses, budget_tokens)
    written_order = sorted(range(len(order)), key=lambda position: order[position])  # the characters as given
    parts = ["scene", *(f"character:{position}" for position in written_order), "style"]
    prompt = ", ".join(fill.clauses(part) for part in parts if fill.kept.get(part))
    offered = {"scene": scene_clauses, "style": style_clauses, **{f"character:{position}": looks[index] for position, index in enumerate(order)}}
    shortened = {_part_name(part) for part, clauses in offered.items() if fill.kept.get(part, {}) != dict(enumerate(clauses))}

    negative_clauses = _unique([*TEXT_NEGATIVES, *_clauses(style.negative, [])], [])
    negative_words = set(" ".join(negative_clauses).lower().split())
    for clause in negated:  # "no text or letters in the picture" adds nothing to "text, letters"
        if set(clause.split()) - negative_words - _DANGLING - _FILLER:
            negative_clauses = _unique([*negative_clauses, clause], [])
    negative_fill = _Fill(budget_tokens)
    for index, clause in enumerate(negative_clauses):
        negative_fill.add("negative", index, clause)
    negative = negative_fill.clauses("negative")
    if len(negative_fill.kept.get("negative", {})) < len(negative_clauses):
        shortened.add("negative")
    return PicturePrompt(
        prompt=prompt,
        negative_prompt=negative,
        estimated_tokens=estimate_clip_tokens(prompt),
        negative_estimated_tokens=estimate_clip_tokens(negative),
        shortened=tuple(name for name in ("scene", "characters", "style", "negative") if name in shortened),
    )


def _fill_prompt(scene: list[str], looks: list[list[str]], style: list[str], budget: int) -> _Fill:
    """Spend `budget` on the clauses in order of importance; `looks` come most important first.

    1. the scene, up to what the style and one clause per look leave it (at least SCENE_MIN_SHARE); its first
       clause is cut at a word if it must be; 2. the style's first clause (its look); 3. each look's first clause,
       together at most CHARACTER_SHARE; 4. the style's other clauses; 5. the rest of the scene; 6. the rest of the
       looks. Clauses cut to fit get their whole text back wherever the budget has room for it.
    """
    fill = _Fill(budget)
    wanted = [look for look in looks if look]
    looks_limit = min(_clauses_cost([look[0] for look in wanted]), int(CHARACTER_SHARE * budget))
    scene_limit = max(budget - _clauses_cost(style) - looks_limit, int(SCENE_MIN_SHARE * budget))
    scene_limit = min(scene_limit, budget - _clauses_cost(style[:1]))
    for index, clause in enumerate(scene):
        fill.add("scene", index, clause, limit=scene_limit, shorten="words" if index == 0 else None)
    for clause in style[:1]:
        fill.add("style", 0, clause, shorten="words")
    per_look = max(MIN_CHARACTER_TOKENS, looks_limit // max(1, len(wanted)))
    for position, look in enumerate(looks):
        for clause in look[:1]:
            fill.add(f"character:{position}", 0, clause, limit=looks_limit, cap=per_look, shorten="phrases")
    for index, clause in enumerate(style[1:], start=1):
        fill.add("style", index, clause)
    fill.restore_whole_clauses()
    for index, clause in enumerate(scene):
        fill.add("scene", index, clause)
    for position, look in enumerate(looks):
        for index, clause in enumerate(look):
            fill.add(f"character:{position}", index, clause)
    fill.restore_whole_clauses()
    return fill


def _flat(looks: list[list[str]]) -> list[str]:
    return [clause for look in looks for clause in look]


class _Fill:
    """Clauses kept so far, per part, and the tokens they cost (each clause is charged its comma)."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self.kept: dict[str, dict[int, str]] = {}
        self._part_used: dict[str, int] = {}
        self._cut: dict[tuple[str, int], str] = {}  # the whole clause behind each shortened one

    def add(
        self, part: str, index: int, clause: str, *, limit: int | None = None, cap: int | None = None,
        shorten: Literal["phrases", "words"] | None = None,
    ) -> None:
        """Keep `clause` if it fits the budget, the `limit` on its part (all characters count as one) and its `cap`.

        With `shorten`, a clause that does not fit is cut to what does: before a phrase ("a fox | with a kite"),
        or, with "words", at any word when no phrase boundary is short enough.
        """
        kept = self.kept.setdefault(part, {})
        if index in kept:
            return
        room = self.budget - self.used
        if limit is not None:
            room = min(room, limit - self._part_used.get(_part_name(part), 0))
        if cap is not None:
            room = min(room, cap)
        if _clause_cost(clause) > room:
            if not shorten:
                return
            whole, clause = clause, _shortened(clause, room, words=shorten == "words")
            if not clause:
                return
            self._cut[part, index] = whole
        kept[index] = clause
        self.used += _clause_cost(clause)
        self._part_used[_part_name(part)] = self._part_used.get(_part_name(part), 0) + _clause_cost(clause)

    def clauses(self, part: str) -> str:
        """The kept clauses of `part`, in their original order, as prompt text."""
        return ", ".join(clause for _, clause in sorted(self.kept.get(part, {}).items()))

    def restore_whole_clauses(self) -> None:
        """Put back the whole of each shortened clause that fits in what the budget has left."""
        for (part, index), whole in list(self._cut.items()):
            extra = _clause_cost(whole) - _clause_cost(self.kept[part][index])
            if extra <= self.budget - self.used:
                self.kept[part][index] = whole
                self.used += extra
                del self._cut[part, index]


def _clause_cost(clause: str) -> int:
    return estimate_clip_tokens(clause) + 1  # its ", " separator (one more than the joined prompt needs)


def _clauses_cost(clauses: list[str]) -> int:
    return sum(_clause_cost(clause) for clause in clauses)


def _part_name(part: str) -> str:
    return "characters" if part.startswith("character:") else part


def _shortened(clause: str, room: int, *, words: bool) -> str:
    """The longest start of `clause` within `room` tokens (its comma included): whole phrases, else (`words`) words."""
    pieces = clause.split()
    # Estimates add up over words (no token spans a space), so each start's cost is a running sum.
    costs = [0]
    for piece in pieces:
        costs.append(costs[-1] + estimate_clip_tokens(piece))
    phrase_ends = [index for index in range(1, len(pieces)) if pieces[index].lower() in _PHRASE_STARTS]
    word_ends = list(range(1, len(pieces))) if words else []
    for end in [*reversed(phrase_ends), *reversed(word_ends)]:
        while end and pieces[end - 1].lower() in _DANGLING:
            end -= 1
        if costs[end] + 1 <= room and (candidate := _trimmed(pieces[:end])):
            return candidate
    return ""


def _clauses(text: str, negated: list[str]) -> list[str]:
    """`text` cleaned and split into clauses; "no …" clauses go to `negated` instead."""
    clauses: list[str] = []
    for raw in _CLAUSE_BREAK.split(_cleaned(text)):
        words = raw.split()
        while words and words[0].lower() in _LEADING:
            words = words[1:]
        clause = _trimmed(words)
        if not clause:
            continue
        if match := _NEGATED.match(clause.lower()):
            negated.append(match.group(1))
            continue
        clauses.append(clause)
    return _unique(clauses, [])


def _trimmed(words: list[str]) -> str:
    while words and words[-1].lower() in _DANGLING:
        words = words[:-1]
    clause = " ".join(words)
    return clause if any(character.isalpha() for character in clause) else ""


def _cleaned(text: str) -> str:
    """Letters, digits, inner apostrophes and hyphens, and clause breaks; symbols, emoji, markup and controls go."""
    text = unicodedata.normalize("NFKC", text).replace("’", "'").replace("&", " and ").replace("\\n", "\n")
    text = _MARKUP.sub(" ", text)
    out: list[str] = []
    for position, character in enumerate(text):
        before = text[position - 1] if position else " "
        after = text[position + 1] if position + 1 < len(text) else " "
        if character in "\n\r\t\v\f\u2028\u2029":
            out.append("\n")
        else:
            out.append(character if _kept(character, before, after) else " ")
    return re.sub(r"[ ]+", " ", "".join(out))


def _kept(character: str, before: str, after: str) -> bool:
    """Letters, digits and clause punctuation stay; so do a combining mark on a letter and an apostrophe or hyphen
    inside a word."""
    category = unicodedata.category(character)[0]
    if category in "LN" or character in ",;:.!?":
        return True
    if category == "M":
        return before.isalpha()
    return character in "'-" and before.isalnum() and after.isalnum()


def _key(clause: str) -> str:
    return " " + " ".join(clause.lower().split()) + " "


def _unique(clauses: list[str], earlier: list[str]) -> list[str]:
    """`clauses` without those that repeat, or are contained in, an earlier clause (or one of `earlier`)."""
    seen = [_key(clause) for clause in earlier]
    kept: list[str] = []
    for clause in clauses:
        key = _key(clause)
        if any(key in other for other in seen):
            continue
        kept.append(clause)
        seen.append(key)
    return kept


def _without_name(look: str, name: str) -> str:
    """`look` without the character's name where it is written as a name ("Bear, a brown bear" keeps one bear)."""
    name = " ".join(name.split())
    if not name or not name[0].isupper():
        return look
    return re.sub(rf"(?<!\w){re.escape(name)}(?!\w)(?:'s)?(?:\s+(?:is|was)\b)?", " ", look)


def _mentioned(name: str, scene: str) -> bool:
    name = " ".join(name.split())
    return bool(name) and re.search(rf"(?<!\w){re.escape(name)}(?!\w)", scene, re.IGNORECASE) is not None
