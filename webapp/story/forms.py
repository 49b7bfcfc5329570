"""The book's options as forms send them: one `StoryForm` for the REST API (multipart fields), the studio's widgets
and the CLI's flags, turned into validated `StoryOptions` with one set of messages, so a bad value gets the same
sentence everywhere.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, Field, ValidationError, field_validator

from shared.blocked_words import refuse_blocked
from shared.errors import InvalidRequest
from shared.http_errors import describe_validation
from webapp.story.options import MOST_PAGES, StoryOptions

Body = TypeVar("Body", bound=BaseModel)
_BRAND_FIELDS = ("name", "voice", "message", "primary_color", "secondary_color", "cta_url", "cta_text")


class StoryForm(BaseModel):
    """Loose form fields; a blank field means "the default". `options()` checks them against the book's rules."""

    pages: int | None = Field(default=None, description="Story pages, 1–24 (default 8).")
    language: str | None = Field(default=None, description="Language code or name, e.g. 'ko' or 'Korean'.")
    style: str | None = Field(default=None, description="Style preset id, see GET /api/v1/options.")
    audience: str | None = Field(default=None, description="young-children, children, preteens, teens or adults.")
    tone: str | None = Field(default=None, description="Tone or genre, e.g. 'bedtime story'.")
    idea: str | None = Field(default=None, description="An idea or plot hint.")
    character_names: str | None = Field(default=None, description="Character names, comma-separated.")
    bilingual: bool | None = Field(default=None, description="Print the English text under the translation.")
    seed: int | None = Field(default=None, description="One seed for the whole book's pictures.")
    narrate: bool | None = Field(default=None, description="Read the book aloud (default true): reader, EPUB and audiobook get a voice.")
    reference_strength: float | None = Field(
        default=None, description="0–1: how strongly the pictures follow the photo's people and pets; 0 turns it off."
    )
    print: str | None = Field(default=None, description="The PDF's page size: screen (default), square-8.5, 8x10, a4 or letter.")
    crop_marks: bool | None = Field(default=None, description="Print sizes: crop marks around each page (default off).")
    brand_name: str | None = None
    brand_voice: str | None = None
    brand_message: str | None = Field(default=None, description="A message or product to weave into the story.")
    brand_primary_color: str | None = Field(default=None, description="#RRGGBB")
    brand_secondary_color: str | None = Field(default=None, description="#RRGGBB")
    brand_cta_url: str | None = Field(default=None, description="Call-to-action link (http or https).")
    brand_cta_text: str | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_default(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    def options(self, *, max_pages: int, blocked_words: tuple[str, ...] = ()) -> StoryOptions:
        """Validated options; raises `InvalidRequest` naming the form field and the rule."""
        brand = {key: str(getattr(self, f"brand_{key}")).strip() for key in _BRAND_FIELDS if getattr(self, f"brand_{key}") is not None}
        fields: dict[str, Any] = {
            name: value for name, value in self.model_dump(exclude={f"brand_{key}" for key in _BRAND_FIELDS}).items() if value is not None
        }
        fields["character_names"] = split_names(self.character_names)
        if brand:
            if "name" not in brand:
                raise InvalidRequest("`brand_name` is required when any other brand field is given.", param="brand_name")
            fields["brand"] = brand
        if self.pages is not None and not 1 <= self.pages <= MOST_PAGES:
            raise InvalidRequest(f"`pages`: a book has 1 to {min(MOST_PAGES, max_pages)} pages, not {self.pages}.", param="pages")
        try:
            options = StoryOptions.model_validate(fields)
        except ValidationError as exc:
            raise describe_validation([_form_location(error) for error in exc.errors()]) from None
        if options.pages > max_pages:
            raise InvalidRequest(
                f"`pages`: this server makes books of at most {max_pages} pages (FABULA_MAX_BOOK_PAGES), not {options.pages}.", param="pages"
            )
        for field, text in options.reader_texts().items():
            refuse_blocked(text, field, blocked_words)
        return options


def split_names(names: str | list[str] | None) -> list[str]:
    """'Mia, Leo' → ['Mia', 'Leo']; a list passes through."""
    if names is None:
        return []
    if isinstance(names, str):
        names = names.split(",")
    return [name.strip() for name in names if name and name.strip()]


def _form_location(error: Any) -> dict[str, Any]:
    """An error of the nested options as the form names it: ("brand", "cta_url") → "brand_cta_url"; list positions
    (a character name's index) dropped."""
    location = [str(part) for part in error.get("loc", ()) if not isinstance(part, int)]
    if len(location) > 1 and location[0] == "brand":
        location = ["brand_" + "_".join(location[1:])]
    return {**error, "loc": tuple(location)}


def parse_body(model: type[Body], data: dict[str, Any]) -> Body:
    """Validate a small JSON or form body, with the same plain messages."""
    try:
        return model.model_validate({key: value for key, value in data.items() if not (value is None or (isinstance(value, str) and not value.strip()))})
    except ValidationError as exc:
        raise describe_validation([dict(error) for error in exc.errors()]) from None
