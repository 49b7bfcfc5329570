"""Reading the outline as it streams in (pure): which line is the title, the characters, or a page's beat.

The model is asked for "Title: …", "Characters: Name (look); …" and numbered lines, but models drift: the title
may come without its label, pages may be "Page 2: …" or "2) …", and a character line may use dashes. Lines that
fit none of these are ignored; the writer fills whatever the plan still lacks with simpler questions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TITLE_LINE = re.compile(r"^\W*(?:the\s+|book\s+|story\s+)?title\W*[:\-–—]\s*(?P<text>.*)$", re.IGNORECASE)
CHARACTERS_LINE = re.compile(r"^\W*(?:main\s+)?characters?\W*[:\-–—]\s*(?P<text>.+)$", re.IGNORECASE)
BEAT_LINE = re.compile(r"^\W*(?:page|part|scene)?\s*(?P<number>\d{1,2})\s*(?:[.):\-–—]|\s*of\s*\d+\s*[:.])\s*(?P<text>.+)$", re.IGNORECASE)
LOOK = re.compile(r"^\s*(?P<name>[^()\-–—:,]+?)\s*(?:\((?P<paren>[^)]*)\)?|[\-–—:,]\s*(?P<dash>.+))\s*$")


@dataclass(frozen=True)
class OutlineLine:
    kind: str  # "title", "characters", "beat" or "other"
    text: str
    number: int | None = None


def read_line(line: str) -> OutlineLine:
    stripped = line.strip().strip("*").strip()
    if not stripped:
        return OutlineLine("other", "")
    for kind, pattern in (("title", TITLE_LINE), ("characters", CHARACTERS_LINE)):
        match = pattern.match(stripped)
        if match:
            return OutlineLine(kind, match.group("text").strip())
    match = BEAT_LINE.match(stripped)
    if match:
        return OutlineLine("beat", match.group("text").strip(), int(match.group("number")))
    return OutlineLine("other", stripped)


def read_looks(text: str, names: tuple[str, ...]) -> dict[str, str]:
    """'Mia (a girl in a red coat); Leo - a brown dog' → {'Mia': 'a girl in a red coat', 'Leo': 'a brown dog'},
    keeping only the book's own names (in their own spelling)."""
    looks: dict[str, str] = {}
    by_name = {name.casefold(): name for name in names}
    for part in re.split(r";|\)\s*,|\),?\s+and\s+", text):
        match = LOOK.match(part.strip() + (")" if "(" in part and ")" not in part else ""))
        if not match:
            continue
        name = by_name.get(match.group("name").strip().casefold())
        look = (match.group("paren") or match.group("dash") or "").strip()
        if name and look and name not in looks:
            looks[name] = look
    return looks


class LineSplitter:
    """Cut streamed text into complete lines."""

    def __init__(self) -> None:
        self._pending = ""

    def push(self, delta: str) -> list[str]:
        self._pending += delta
        *complete, self._pending = self._pending.split("\n")
        return complete

    def flush(self) -> list[str]:
        rest, self._pending = self._pending, ""
        return [rest] if rest.strip() else []
