"""Turning loose form fields (REST multipart, UI widgets) into `StoryOptions`, with one set of messages.

The REST API and the UI both call `story_options`, so a bad value gets the same sentence in both places.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from shared.blocked_words import refuse_blocked
from shared.errors import InvalidRequest
from webapp.story.options import StoryOptions


def split_names(names: str | list[str] | None) -> list[str]:
    """'Mia, Leo' → ['Mia', 'Leo']; a list passes through."""
    if names is None:
        return []
    if isinstance(names, str):
        names = names.split(",")
    return [name.strip() for name in names if name and name.strip()]


def _blank_to_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


def describe_validation(error: ValidationError, *, prefix: dict[str, str] | None = None) -> tuple[str, str | None]:
    """A plain sentence per problem, naming the form field, e.g. "`pages`: Input should be ≤ 24."."""
    parts: list[str] = []
    first_param: str | None = None
    for item in error.errors()[:5]:
        location = [str(part) for part in item.get("loc", ()) if not isinstance(part, int)]
        if location and prefix and location[0] in prefix:
            location = [prefix[location[0]] + "_".join(location[1:])] if len(location) > 1 else [location[0]]
        param = "_".join(location) if location else None
        first_param = first_param or param
        message = str(item.get("msg", "is invalid")).removeprefix("Value error, ")
        if item.get("type") == "missing":
            parts.append(f"`{param}` is required.")
        else:
            parts.append(f"`{param}`: {message}." if param else f"{message}.")
    return " ".join(parts), first_param


def story_options(
    *,
    max_pages: int,
    pages: int | None = None,
    language: str | None = None,
    style: str | None = None,
    audience: str | None = None,
    tone: str | None = None,
    idea: str | None = None,
    character_names: str | list[str] | None = None,
    bilingual: bool | None = None,
    seed: int | None = None,
    narrate: bool | None = None,
    reference_strength: float | None = None,
    blocked_words: tuple[str, ...] = (),
    brand_name: str | None = None,
    brand_voice: str | None = None,
    brand_message: str | None = None,
    brand_primary_color: str | None = None,
    brand_secondary_color: str | None = None,
    brand_cta_url: str | None = None,
    brand_cta_text: str | None = None,
) -> StoryOptions:
    """Build validated options; raises `InvalidRequest` naming the field and the rule."""
    brand_values = {
        "name": brand_name, "voice": brand_voice, "message": brand_message, "primary_color": brand_primary_color,
        "secondary_color": brand_secondary_color, "cta_url": brand_cta_url, "cta_text": brand_cta_text,
    }
    brand_values = {key: value.strip() for key, value in brand_values.items() if _blank_to_none(value) is not None}
    fields: dict[str, Any] = {
        "pages": pages, "language": _blank_to_none(language), "style": _blank_to_none(style), "audience": _blank_to_none(audience),
        "tone": _blank_to_none(tone), "idea": _blank_to_none(idea), "bilingual": bilingual, "seed": seed,
        "narrate": narrate, "reference_strength": reference_strength, "character_names": split_names(character_names),
    }
    fields = {key: value for key, value in fields.items() if value is not None}
    if brand_values:
        if "name" not in brand_values:
            raise InvalidRequest("`brand_name` is required when any other brand field is given.", param="brand_name")
        fields["brand"] = brand_values
    try:
        options = StoryOptions.model_validate(fields)
    except ValidationError as exc:
        message, param = describe_validation(exc, prefix={"brand": "brand_"})
        raise InvalidRequest(message, param=param) from None
    if options.pages > max_pages:
        raise InvalidRequest(f"`pages`: this server makes books of at most {max_pages} pages (FABULA_MAX_BOOK_PAGES), not {options.pages}.", param="pages")
    for field, text in options.reader_texts().items():
        refuse_blocked(text, field, blocked_words)
    return options


def parse_body(model: type[BaseModel], data: dict[str, Any]) -> BaseModel:
    """Validate a small JSON or form body, with the same plain messages."""
    try:
        return model.model_validate({key: _blank_to_none(value) for key, value in data.items() if _blank_to_none(value) is not None})
    except ValidationError as exc:
        message, param = describe_validation(exc)
        raise InvalidRequest(message, param=param) from None

