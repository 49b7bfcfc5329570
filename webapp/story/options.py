"""The options a book takes, validated at the edge (REST, UI and CLI share these)."""

from __future__ import annotations

import re
from enum import Enum

from pydantic import BaseModel, Field, field_validator

from webapp.book.print_sizes import PrintSize
from webapp.story.languages import find_language
from webapp.story.styles import find_style

_COLOR = re.compile(r"^#[0-9A-Fa-f]{6}$")


class Audience(str, Enum):
    young_children = "young-children"
    children = "children"
    preteens = "preteens"
    teens = "teens"
    adults = "adults"


AUDIENCE_DESCRIPTIONS = {
    Audience.young_children: "young children aged 3 to 5: very short simple sentences, gentle, reassuring",
    Audience.children: "children aged 6 to 9: simple vivid sentences, a little adventure, a kind ending",
    Audience.preteens: "readers aged 10 to 12: richer vocabulary, real stakes, humour",
    Audience.teens: "teenagers: a confident voice, emotional depth",
    Audience.adults: "adults: literary, nuanced",
}


class BrandKit(BaseModel):
    """What a marketer brings: the story weaves in the message; the PDF wears the colours, logo and call to action."""

    name: str = Field(min_length=1, max_length=80)
    voice: str | None = Field(default=None, max_length=120, description="A few words of tone, e.g. 'playful, confident'.")
    message: str | None = Field(default=None, max_length=300, description="A message or product to weave into the story.")
    primary_color: str = "#1F3A5F"
    secondary_color: str = "#F2B134"
    cta_url: str | None = Field(default=None, max_length=500)
    cta_text: str | None = Field(default=None, max_length=80)

    @field_validator("primary_color", "secondary_color")
    @classmethod
    def _hex_color(cls, value: str) -> str:
        if not _COLOR.match(value.strip()):
            raise ValueError(f"colours are written #RRGGBB, e.g. #1F3A5F, not {value!r}")
        return value.strip().upper()

    @field_validator("cta_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if not re.match(r"^https?://[^\s<>\"']+$", value):
            raise ValueError("the call-to-action link must be an http:// or https:// address without spaces")
        return value


MOST_PAGES = 24  # the most pages any book has; a server may allow fewer (FABULA_MAX_BOOK_PAGES)


class StoryOptions(BaseModel):
    pages: int = Field(default=8, ge=1, le=MOST_PAGES, description="Story pages, 1–24.")
    language: str = Field(default="en", description="Language of the book, by code or name (e.g. 'ko' or 'Korean').")
    style: str = Field(default="watercolor", description="Style preset id (see GET /api/v1/options).")
    audience: Audience = Audience.children
    tone: str = Field(default="warm and whimsical", max_length=80, description="Tone or genre, e.g. 'adventure', 'bedtime story'.")
    idea: str | None = Field(default=None, max_length=1000, description="An idea or plot hint (treated as data, not instructions).")
    character_names: list[str] = Field(default_factory=list, max_length=6)
    bilingual: bool = Field(default=False, description="Print the English text under the translation.")
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1, description="One seed for the whole book's pictures.")
    narrate: bool = Field(default=True, description="Read the book aloud: the reader, the EPUB and the audiobook get a voice.")
    reference_strength: float | None = Field(
        default=None, ge=0.0, le=1.0, description="How strongly the pictures follow the photo's people and pets (0 turns it off; default the server's)."
    )
    brand: BrandKit | None = None
    print: PrintSize = Field(
        default=PrintSize.screen,
        description=(
            "The PDF's page size: `screen` (the square on-screen layout), or a print size with 3 mm bleed and a TrimBox "
            "and pictures upscaled to 300 dpi: `square-8.5`, `8x10`, `a4`, `letter`."
        ),
    )
    crop_marks: bool = Field(default=False, description="Print sizes: crop marks in a slug around each page (most print-on-demand shops want none).")

    def reader_texts(self) -> dict[str, str]:
        """Every field the reader wrote, by its form name (what the blocked-word rule reads)."""
        texts = {"idea": self.idea or "", "tone": self.tone, "character_names": ", ".join(self.character_names)}
        if self.brand:
            texts |= {
                "brand_name": self.brand.name, "brand_voice": self.brand.voice or "", "brand_message": self.brand.message or "",
                "brand_cta_text": self.brand.cta_text or "",
            }
        return texts

    @field_validator("language")
    @classmethod
    def _known_language(cls, value: str) -> str:
        return find_language(value).code

    @field_validator("style")
    @classmethod
    def _known_style(cls, value: str) -> str:
        return find_style(value).id

    @field_validator("character_names")
    @classmethod
    def _names(cls, names: list[str]) -> list[str]:
        cleaned = [name.strip() for name in names if name and name.strip()]
        for name in cleaned:
            if len(name) > 40:
                raise ValueError(f"a character name is at most 40 characters, not {len(name)}")
        return cleaned

    @field_validator("idea", "tone")
    @classmethod
    def _strip(cls, value: str | None) -> str | None:
        return value.strip() if value else value
