"""What the phone reader shows: a book's pages, their pictures, narration and sentence timings, and its files.

The web app builds a `ReaderBook` from a finished job; the reader only renders it. Every URL is checked here,
at the boundary, so a `javascript:` or protocol-relative link can never reach an `href` or `src`.
"""

from __future__ import annotations

from datetime import datetime, UTC
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from webapp.book.narration import SpokenSentence
from webapp.book.text_shaping import is_right_to_left_language

Direction = Literal["ltr", "rtl"]


def checked_url(value: str | None) -> str | None:
    """A URL the page may link to: absolute http(s), or a path on this site (`/…`, not `//…`)."""
    if value is None:
        return None
    url = value.strip()
    if url.startswith("/") and not url.startswith("//") and "\\" not in url:
        return url
    if url.lower().startswith(("https://", "http://")) and len(url) > len("https://"):
        return url
    raise ValueError(f"a reader URL must be http(s) or start with a single `/`, but is {value!r}")


class ReaderPage(BaseModel):
    """One story page: its number (1…), its text, its picture and, when narrated, its clip and sentence times."""

    number: int = Field(ge=0)
    text: str
    image_url: str | None = None
    audio_url: str | None = None
    sentences: list[SpokenSentence] = Field(default_factory=list)

    @field_validator("image_url", "audio_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        return checked_url(value)


class ReaderBook(BaseModel):
    """A whole book as the reader at `/read/<token>` shows it.

    `direction` defaults from `language` (Arabic, Hebrew, Persian… read right to left). A book whose
    `expires_at` has passed is answered like an unknown one.
    """

    token: str
    title: str
    language: str = "en"
    direction: Direction = "ltr"
    author: str = ""
    cover_url: str | None = None
    pages: list[ReaderPage] = Field(min_length=1)
    pdf_url: str
    epub_url: str | None = None
    audiobook_url: str | None = None
    expires_at: datetime | None = None

    @model_validator(mode="before")
    @classmethod
    def _direction_from_language(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("direction") is None:
            data = {**data, "direction": "rtl" if is_right_to_left_language(data.get("language")) else "ltr"}
        return data

    @field_validator("cover_url", "pdf_url", "epub_url", "audiobook_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        return checked_url(value)

    def has_expired(self, now: datetime | None = None) -> bool:
        if self.expires_at is None:
            return False
        expires = self.expires_at if self.expires_at.tzinfo else self.expires_at.replace(tzinfo=UTC)
        return expires <= (now or datetime.now(UTC))

    def media_urls(self) -> list[str]:
        """Every picture and clip the page loads, for the Content-Security-Policy's sources."""
        urls = [self.cover_url] + [url for page in self.pages for url in (page.image_url, page.audio_url)]
        return [url for url in urls if url]
