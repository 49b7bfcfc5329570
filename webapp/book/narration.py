"""What a narrated page is: its audio clip and, for each sentence, where in the clip it is spoken.

The pipeline narrates a page sentence by sentence, joins the clips into one file per page and keeps each
sentence's start and end; the web reader highlights by these times, the EPUB's media overlays pair each sentence
with its clip range, and the audiobook puts a chapter mark at each page.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class SpokenSentence(BaseModel):
    """One sentence of a page and the part of the page's clip that speaks it (seconds from the clip's start)."""

    text: str
    begin: float = Field(ge=0)
    end: float = Field(ge=0)


class PageNarration(BaseModel):
    """A page's narration: the artifact that holds its audio, its length and its sentences in order.

    `page` is 0 for the title (the cover), 1… for the story's pages.
    """

    page: int = Field(ge=0)
    audio_name: str
    audio_format: str = "mp3"
    duration: float = Field(ge=0)
    voice: str = ""
    sentences: list[SpokenSentence] = Field(default_factory=list)
