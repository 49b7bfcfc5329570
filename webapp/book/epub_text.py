"""Text for the EPUB's XML documents: escaped so any input stays plain text, and split into sentence spans.

Every string goes through `clean_text` first (no control, bidi-override or unassigned characters: XML 1.0
forbids most of them and overrides would let text reorder the page), then through `xml_text`/`xml_attribute`,
so `<script>`, `]]>`, `&` and quotes end as characters on the page, never as markup.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from webapp.book.narration import SpokenSentence
from webapp.book.scripts import clean_text
from webapp.book.sentences import split_sentences

_SPACE_RUN = re.compile(r"\s+")


def xml_text(text: str) -> str:
    """`text` as XML character data (">" is escaped too, so "]]>" can never appear)."""
    return clean_text(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def xml_attribute(text: str) -> str:
    """`text` as the value of a double-quoted XML attribute, on one line."""
    return xml_text(_SPACE_RUN.sub(" ", text).strip()).replace('"', "&quot;")


def xml_lines(text: str) -> str:
    """`text` as XHTML phrasing content: escaped, its line breaks kept as `<br/>`."""
    return "<br/>".join(xml_text(line) for line in clean_text(text).strip().split("\n"))


@dataclass(frozen=True)
class SentenceSpan:
    """One sentence of a page as the EPUB shows it: its element id, its text, the whitespace before it on the page
    and, when narrated, its clip range (seconds)."""

    id: str
    text: str
    before: str = ""
    begin: float | None = None
    end: float | None = None


def _without_space(text: str) -> str:
    return "".join(char for char in unicodedata.normalize("NFC", clean_text(text)) if not char.isspace())


def align(text: str, sentences: Sequence[str]) -> list[tuple[int, int]] | None:
    """Where each sentence lies in `text` ((start, end) offsets), comparing without whitespace; None if they differ.

    The narrator's sentences may have lost a line break or doubled a space; the page keeps its own characters.
    """
    index = 0
    bounds: list[tuple[int, int]] = []
    for sentence in sentences:
        wanted = _without_space(sentence)
        if not wanted:
            return None
        while index < len(text) and text[index].isspace():
            index += 1
        start = matched = index
        for char in wanted:
            while matched < len(text) and text[matched].isspace():
                matched += 1
            if matched >= len(text) or text[matched] != char:
                return None
            matched += 1
        bounds.append((start, matched))
        index = matched
    return bounds if not text[index:].strip() else None


def page_spans(text: str, language: str, page: int, narrated: Sequence[SpokenSentence] | None) -> list[SentenceSpan]:
    """The sentence spans of a page's text: the narrator's sentences with their times when they match the text,
    else the text split by `split_sentences` (no times). Ids are `s<page>-<n>`, n from 1.
    """
    cleaned = unicodedata.normalize("NFC", clean_text(text))
    bounds = align(cleaned, [sentence.text for sentence in narrated]) if narrated else None
    times: list[tuple[float | None, float | None]]
    if bounds is not None and narrated:
        times = [(sentence.begin, sentence.end) for sentence in narrated]
    else:
        bounds = align(cleaned, split_sentences(cleaned, language)) or [(0, len(cleaned))]
        times = [(None, None)] * len(bounds)
    spans = []
    previous = 0
    for number, ((start, end), (begin, finish)) in enumerate(zip(bounds, times, strict=True), start=1):
        spans.append(SentenceSpan(f"s{page}-{number}", cleaned[start:end], cleaned[previous:start] if number > 1 else "",
                                  begin, finish))
        previous = end
    return [span for span in spans if span.text.strip()]


def spans_are_timed(spans: Sequence[SentenceSpan]) -> bool:
    return bool(spans) and all(span.begin is not None and span.end is not None for span in spans)


def spans_xhtml(spans: Sequence[SentenceSpan]) -> str:
    """The spans as XHTML, one `<span id="…">` per sentence, with the page's own spacing and line breaks between."""
    parts = []
    for span in spans:
        gap = span.before
        if gap:
            parts.append("<br/>" * min(gap.count("\n"), 2) if "\n" in gap else " ")
        parts.append(f'<span id="{span.id}">{xml_lines(span.text)}</span>')
    return "".join(parts)
