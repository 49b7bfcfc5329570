"""What the LLM writes: an outline (title, characters, one beat per page, streamed line by line), then each page's
text and its translation in concurrent calls, assembled into the story plan.

`LengthBudget` bounds, in characters, what each piece may take; the JSON-schema builders below serve the benchmark's
baseline (the original demo's order asks for JSON), not the writer, which asks for plain text.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import GenericAlias
from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints, create_model


@dataclass(frozen=True)
class LengthBudget:
    """Upper bounds, in characters, for what the LLM writes."""

    title: int = 80
    character_name: int = 40
    character_description: int = 120
    page_text: int = 700
    scene_prompt: int = 200
    beat: int = 200

    @classmethod
    def small_model(cls) -> LengthBudget:
        """For a small model on a CPU (the offline profile): full pages, fewer tokens spent on each try."""
        return cls(page_text=520, beat=160, title=70)

    @classmethod
    def compact(cls) -> LengthBudget:
        """For tiny random models: the same shape, short strings, so tests and demos stay fast."""
        return cls(title=40, character_name=16, character_description=60, page_text=120, scene_prompt=80, beat=60)


class Character(BaseModel):
    name: str
    description: str


class PlanPage(BaseModel):
    text: str
    scene_prompt: str


class StoryPlan(BaseModel):
    title: str
    cover_prompt: str
    characters: list[Character]
    pages: list[PlanPage]


class OutlinePage(BaseModel):
    beat: str
    scene_prompt: str


class StoryOutline(BaseModel):
    title: str
    cover_prompt: str
    characters: list[Character]
    pages: list[OutlinePage]
    fallbacks: list[str] = Field(default_factory=list, description="Pieces the model could not write within the rules (e.g. 'title', 'beat:3').")

    @property
    def names(self) -> list[str]:
        return [character.name for character in self.characters]

    def as_plan(self, texts: list[str] | None = None) -> StoryPlan:
        """The plan with the given page texts (the beats stand in until the texts exist)."""
        texts = texts or [page.beat for page in self.pages]
        return StoryPlan(
            title=self.title, cover_prompt=self.cover_prompt, characters=self.characters,
            pages=[PlanPage(text=text, scene_prompt=page.scene_prompt) for text, page in zip(texts, self.pages, strict=True)],
        )


class OutlineDraft(BaseModel):
    """The outline while it is being written: saved as each piece arrives, so a restarted job goes on from it."""

    title: str | None = None
    characters: list[Character] | None = None
    beats: dict[int, str] = Field(default_factory=dict)
    fallbacks: list[str] = Field(default_factory=list)
    opening: bool = Field(default=False, description="Page 1 is the photo's own scene, settled before the plan was asked for.")


class Translation(BaseModel):
    title: str
    pages: list[str]


def _bounded(max_chars: int) -> tuple[type[str], object]:
    return (str, Field(min_length=1, max_length=max_chars))


def _list_of(item: object) -> Any:
    """`list[item]` for an item type made at run time (spelled so a type checker does not take `item` for a type)."""
    return GenericAlias(list, (item,))


def _book_schema(name: str, pages: int, budget: LengthBudget, page_fields: dict[str, int]) -> type[BaseModel]:
    """Title, cover prompt, 1–4 characters and exactly `pages` pages with the given bounded string fields."""
    character = create_model(
        f"{name}Character", name=_bounded(budget.character_name), description=_bounded(budget.character_description)
    )
    fields: dict[str, Any] = {field: _bounded(limit) for field, limit in page_fields.items()}
    page = create_model(f"{name}Page", **fields)
    return create_model(
        f"{name}Schema",
        title=_bounded(budget.title),
        cover_prompt=_bounded(budget.scene_prompt),
        characters=(_list_of(character), Field(min_length=1, max_length=4)),
        pages=(_list_of(page), Field(min_length=pages, max_length=pages)),
    )


def plan_model(pages: int, budget: LengthBudget) -> type[BaseModel]:
    """The whole plan in one schema (texts included): pins the page count and every length."""
    return _book_schema("StoryPlan", pages, budget, {"text": budget.page_text, "scene_prompt": budget.scene_prompt})


def translation_model(pages: int, budget: LengthBudget) -> type[BaseModel]:
    # Translations can run longer than the English (German, Russian); give them room.
    page_text = Annotated[str, StringConstraints(min_length=1, max_length=budget.page_text * 2)]
    return create_model(
        "TranslationSchema",
        title=(str, Field(min_length=1, max_length=budget.title * 2)),
        pages=(_list_of(page_text), Field(min_length=pages, max_length=pages)),
    )


def page_text_model(budget: LengthBudget) -> type[BaseModel]:
    return create_model("PageTextSchema", text=(str, Field(min_length=1, max_length=budget.page_text)))
