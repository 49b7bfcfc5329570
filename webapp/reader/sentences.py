"""Where each narrated sentence sits in a page's printed text, so the reader can wrap it in its own span.

The narration keeps each sentence's text as it was spoken; the page keeps the text as it is printed (line
breaks, several spaces). A sentence is found in the page text in order, with any run of whitespace matching any
other; a sentence that cannot be found is left unhighlighted rather than shown twice.
"""

from __future__ import annotations

import re

from pydantic import BaseModel

from webapp.book.narration import SpokenSentence


class TextRun(BaseModel):
    """A stretch of a page's text: a spoken sentence (with its times) or the text between sentences."""

    text: str
    sentence: SpokenSentence | None = None


def _pattern(sentence_text: str) -> re.Pattern[str] | None:
    words = sentence_text.split()
    return re.compile(r"\s+".join(re.escape(word) for word in words)) if words else None


def sentence_runs(text: str, sentences: list[SpokenSentence]) -> list[TextRun]:
    """`text` cut into runs; joining the runs' texts gives `text` back unchanged."""
    runs: list[TextRun] = []
    cursor = 0
    for sentence in sentences:
        pattern = _pattern(sentence.text)
        match = pattern.search(text, cursor) if pattern else None
        if match is None:
            continue
        if match.start() > cursor:
            runs.append(TextRun(text=text[cursor:match.start()]))
        runs.append(TextRun(text=match.group(0), sentence=sentence))
        cursor = match.end()
    if cursor < len(text):
        runs.append(TextRun(text=text[cursor:]))
    return runs
