"""What the REST API answers (pydantic models, so /docs shows every field)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from webapp.book.print_check import PrintCheck
from webapp.jobs.models import JobStatus, Stage


class StoryLinks(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    self_url: str = Field(serialization_alias="self", description="This story.")
    events: str = Field(description="Server-sent progress events.")
    book: str = Field(description="The PDF's public link (it answers 404 until the book is bound).")
    reader: str = Field(description="The phone reader, the QR code's target (404 until the book is bound).")


class StoryAccepted(BaseModel):
    id: str
    status: JobStatus
    stage: Stage
    pages_total: int
    parent_id: str | None = None
    links: StoryLinks


class PageView(BaseModel):
    number: int = Field(description="1-based page number.")
    text: str = Field(description="The page's text in the book's language; empty while it is still being written.")
    original_text: str = Field(description="The English text the story was written in.")
    image_url: str | None = Field(default=None, description="The page's picture, once painted.")
    audio_url: str | None = Field(default=None, description="The page read aloud (MP3), once narrated and bound.")
    replaced: bool = Field(default=False, description="The picture was flagged by the safety classifier on every try and shows a calm placeholder.")


class StoryView(BaseModel):
    id: str
    status: JobStatus
    stage: Stage
    pages_done: int
    pages_total: int
    error: str | None = None
    error_type: str | None = None
    title: str | None = None
    original_title: str | None = None
    language: str
    options: dict
    created_at: float
    updated_at: float
    parent_id: str | None = None
    book_version: int = 0
    cover_url: str | None = None
    book_url: str | None = Field(default=None, description="The PDF's public link, once the book is bound.")
    reader_url: str | None = Field(default=None, description="The phone reader (pictures, text, read aloud), once the book is bound.")
    epub_url: str | None = Field(default=None, description="The EPUB 3 (reads along with the narration), once the book is bound.")
    audiobook_url: str | None = Field(default=None, description="The audiobook (M4B, a chapter per page), once a narrated book is bound.")
    narration_note: str | None = Field(default=None, description="Why the book has no voice, when it could not be read aloud.")
    book_language: str | None = Field(default=None, description="The language the book is written in: `language`, unless the model could not write it.")
    language_note: str | None = Field(
        default=None, description="Set when the book is not in the chosen language, e.g. \"This model could not write German; the book is in English.\"",
    )
    pages: list[PageView] = Field(default_factory=list)
    print_check: PrintCheck | None = Field(
        default=None,
        description="For a book with a print size, once its PDF is bound: page size, bleed, each picture's effective dpi, fonts, colour.",
    )
    links: StoryLinks


class PageEdit(BaseModel):
    what: Literal["image", "text"] = Field(default="image", description="Paint a new picture, or rewrite the text.")
    instruction: str | None = Field(default=None, max_length=300, description="For `text`: how to change it, e.g. 'make it funnier'.")


class MorePages(BaseModel):
    count: int = Field(default=1, ge=1, le=24, description="How many pages to add at the end of the story.")


class LanguageOption(BaseModel):
    code: str
    name: str
    native: str
    rtl: bool


class StyleOption(BaseModel):
    id: str
    label: str


class AudienceOption(BaseModel):
    id: str
    description: str


class Limits(BaseModel):
    min_pages: int
    max_pages: int
    max_upload_bytes: int
    max_image_pixels: int
    max_character_names: int
    max_idea_chars: int
    max_queued_jobs: int
    rate_limit_per_minute: int


class OptionsView(BaseModel):
    profile: str
    languages: list[LanguageOption]
    styles: list[StyleOption]
    audiences: list[AudienceOption]
    limits: Limits
    defaults: dict


class ReportBody(BaseModel):
    what: Literal["picture", "text"] = Field(default="picture", description="What is wrong: the picture (painted again) or the text (written again).")
    reason: str = Field(min_length=1, max_length=500, description="What is wrong with the page, in your words.")


class ReportView(BaseModel):
    id: str
    story_id: str
    page: int
    what: str
    reason: str
    action: str = Field(description="What was done: repainted, rewritten, or kept (the book was still being made).")
    created_at: float


class ReportAccepted(BaseModel):
    report: ReportView
    story: StoryAccepted


class ReportList(BaseModel):
    reports: list[ReportView]
