"""What a book is made of: the input of `render_book`, validated before any drawing starts.

Every error names the field and the rule (pydantic puts the field's path in front of the message).
Text fields may hold any Unicode, markup characters included: the renderer draws them as plain text.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

MAX_PAGES = 200
MAX_PAGE_CHARS = 2000
MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_URL_CHARS = 512  # a longer link makes a QR code too dense to scan from paper

_COLOR = re.compile(r"^#[0-9A-Fa-f]{6}$")
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*$")


def check_http_url(value: str, field: str) -> str:
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"`{field}` must be an absolute http:// or https:// link; got {value[:80]!r}")
    if len(value) > MAX_URL_CHARS:
        raise ValueError(f"`{field}` is {len(value)} characters long; the limit is {MAX_URL_CHARS}")
    if any(char.isspace() or ord(char) < 0x20 for char in value):
        raise ValueError(f"`{field}` must not contain spaces or control characters")
    return value


class BookBrand(BaseModel):
    """A marketer's brand kit: its name, colours and logo on the cover, its call to action on the last page."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    voice: str | None = Field(default=None, max_length=1000, description="How the story should sound; not printed.")
    message: str | None = Field(default=None, max_length=500, description="Printed on the last page.")
    logo_png: bytes | None = Field(default=None, max_length=MAX_IMAGE_BYTES)
    primary_color: str = "#1F3A5F"
    secondary_color: str = "#F2B134"
    cta_url: str | None = None
    cta_text: str | None = Field(default=None, max_length=80)

    @field_validator("primary_color", "secondary_color")
    @classmethod
    def _check_color(cls, value: str, info: ValidationInfo) -> str:
        if not _COLOR.match(value.strip()):
            raise ValueError(f"`{info.field_name}` must be a colour written #RRGGBB (e.g. #1F3A5F); got {value[:20]!r}")
        return value.strip().upper()

    @field_validator("cta_url")
    @classmethod
    def _check_cta_url(cls, value: str | None) -> str | None:
        return None if value is None else check_http_url(value, "cta_url")


class BookPage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number: int = Field(ge=1, le=MAX_PAGES)
    text: str = Field(max_length=MAX_PAGE_CHARS)
    image_png: bytes | None = Field(default=None, max_length=MAX_IMAGE_BYTES, description="PNG or JPEG illustration.")


class BookContent(BaseModel):
    """Everything printed in a book. `language` is a BCP-47 tag ("ko", "zh-Hant", "pt-BR")."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=300)
    author: str = Field(default="Fabula", max_length=200)
    language: str
    subject: str = Field(default="", max_length=1000)
    cover_png: bytes | None = Field(default=None, max_length=MAX_IMAGE_BYTES)
    pages: list[BookPage] = Field(min_length=1, max_length=MAX_PAGES)
    download_url: str
    brand: BookBrand | None = None
    original_title: str | None = Field(default=None, max_length=300)
    original_texts: list[str] | None = Field(default=None, description="Bilingual books: the original text of each page.")
    pictures_note: str | None = Field(default=None, max_length=300, description="Said on the last page about how the pictures were made.")

    @field_validator("language")
    @classmethod
    def _check_language(cls, value: str) -> str:
        value = value.strip().replace("_", "-")
        if not _LANGUAGE.match(value):
            raise ValueError(f"`language` must be a language code such as \"ko\", \"ar\" or \"zh-Hant\"; got {value[:40]!r}")
        primary, *rest = value.split("-")
        return "-".join([primary.lower(), *rest])

    @field_validator("download_url")
    @classmethod
    def _check_download_url(cls, value: str) -> str:
        return check_http_url(value, "download_url")

    @model_validator(mode="after")
    def _check_original_texts(self) -> BookContent:
        if self.original_texts is not None:
            if len(self.original_texts) != len(self.pages):
                raise ValueError(
                    f"`original_texts` must hold one text per page: the book has {len(self.pages)} pages "
                    f"and {len(self.original_texts)} original texts"
                )
            for index, text in enumerate(self.original_texts):
                if len(text) > MAX_PAGE_CHARS:
                    raise ValueError(f"`original_texts[{index}]` is {len(text)} characters; the limit is {MAX_PAGE_CHARS}")
        return self

    @property
    def page_originals(self) -> list[str | None]:
        """Each page's original text in a bilingual book; None for every page in any other."""
        if self.original_texts is None:
            return [None] * len(self.pages)
        return list(self.original_texts)

    @property
    def primary_language(self) -> str:
        return self.language.split("-")[0]
