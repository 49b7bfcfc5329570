"""What the REST API answers (pydantic models, so /docs shows every field)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from webapp.jobs.models import JobStatus, Stage


class StoryLinks(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    self_url: str = Field(serialization_alias="self", description="This story.")
    events: str = Field(description="Server-sent progress events.")
    book: str = Field(description="The PDF's public link (it answers 404 until the book is bound).")


class StoryAccepted(BaseModel):
    id: str
    status: JobStatus
    stage: Stage
    pages_total: int
    parent_id: str | None = None
    links: StoryLinks


class PageView(BaseModel):
    number: int = Field(description="1-based page number.")
    text: str = Field(description="The page's text in the book's language.")
    original_text: str = Field(description="The English text the story was written in.")
    image_url: str | None = Field(default=None, description="The page's picture, once painted.")


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
    pages: list[PageView] = Field(default_factory=list)
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
