"""What a book can be: languages, styles, audiences, the limits and the defaults (for forms and clients)."""

from __future__ import annotations

from fastapi import APIRouter

from shared.settings import Settings
from webapp.api.deps import StateDep
from webapp.api.schemas import AudienceOption, LanguageOption, Limits, OptionsView, StyleOption
from webapp.story.languages import LANGUAGES
from webapp.story.options import AUDIENCE_DESCRIPTIONS, StoryOptions
from webapp.story.styles import STYLES

router = APIRouter(tags=["options"])


def options_view(settings: Settings) -> OptionsView:
    name_field = StoryOptions.model_fields["character_names"]
    idea_field = StoryOptions.model_fields["idea"]
    return OptionsView(
        profile=settings.profile.value,
        languages=[LanguageOption(code=language.code, name=language.name, native=language.native, rtl=language.rtl) for language in LANGUAGES],
        styles=[StyleOption(id=style.id, label=style.label) for style in STYLES],
        audiences=[AudienceOption(id=audience.value, description=text) for audience, text in AUDIENCE_DESCRIPTIONS.items()],
        limits=Limits(
            min_pages=1,
            max_pages=settings.max_book_pages,
            max_upload_bytes=settings.max_upload_bytes,
            max_image_pixels=settings.max_image_pixels,
            max_character_names=_max_length(name_field, 6),
            max_idea_chars=_max_length(idea_field, 1000),
            max_queued_jobs=settings.max_queued_jobs,
            rate_limit_per_minute=settings.rate_limit_per_minute,
        ),
        defaults=StoryOptions().model_dump(mode="json"),
    )


def _max_length(field: object, fallback: int) -> int:
    for rule in getattr(field, "metadata", []):
        if hasattr(rule, "max_length"):
            return int(rule.max_length)
    return fallback


@router.get("/options", response_model=OptionsView, summary="Languages, styles, audiences, limits and defaults.")
async def get_options(state: StateDep) -> OptionsView:
    return options_view(state.settings)
