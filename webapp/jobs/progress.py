"""A story's progress: the one place that knows the names of its saved steps and of its artifacts.

The job store keeps each step as a small JSON document under a name, and the artifact folder keeps each file
under a name; `StoryProgress` reads them as typed values, and `Steps`/`Artifacts` name them, so no other module
spells a key. A `StoryProgress` is a snapshot: read it once per decision (`JobStore.progress(job_id)`), not once
per field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from webapp.book.narration import PageNarration
from webapp.story.plan import OutlineDraft, StoryOutline, StoryPlan, Translation

COVER = 0


class Artifacts:
    """File names in a story's artifact folder."""

    PHOTO = "photo.jpg"
    LOGO = "logo.png"
    PDF = "book.pdf"
    EPUB = "book.epub"
    AUDIOBOOK = "book.m4b"

    @staticmethod
    def picture(page: int) -> str:
        return "cover.png" if page == COVER else f"page-{page:02d}.png"

    @staticmethod
    def audio(page: int) -> str:
        return "title.mp3" if page == COVER else f"page-{page:02d}.mp3"


class Steps:
    """Step names in the job store."""

    CAPTION = "caption"
    OUTLINE_DRAFT = "outline_draft"
    OUTLINE = "outline"
    PLAN = "plan"
    TRANSLATION = "translation"
    BOOK = "book"
    NARRATION_NOTE = "narration_note"
    LANGUAGE = "language"  # set when the model could not write the chosen language: the book's actual language

    @staticmethod
    def text(page: int) -> str:
        return f"text:{page}"

    @staticmethod
    def translated(key: str | int) -> str:
        """A translated piece: a page number, or `title`."""
        return f"translation:{key}"

    @staticmethod
    def picture(page: int) -> str:
        return f"image:{page}"

    @staticmethod
    def narration(page: int) -> str:
        return f"narration:{page}"

    @staticmethod
    def repaints(page: int) -> str:
        return f"redo:{page}"

    @staticmethod
    def rewrites(page: int) -> str:
        return f"rewrite:{page}"


@dataclass(frozen=True)
class StoryProgress:
    """Everything saved for one story, read as typed values."""

    steps: dict[str, dict[str, Any]]

    def has(self, name: str) -> bool:
        return bool(self.steps.get(name))

    @property
    def caption(self) -> str | None:
        saved = self.steps.get(Steps.CAPTION)
        return saved["caption"] if saved else None

    @property
    def outline_draft(self) -> OutlineDraft | None:
        saved = self.steps.get(Steps.OUTLINE_DRAFT)
        return OutlineDraft.model_validate(saved) if saved else None

    @property
    def outline(self) -> StoryOutline | None:
        saved = self.steps.get(Steps.OUTLINE)
        return StoryOutline.model_validate(saved) if saved else None

    @property
    def plan(self) -> StoryPlan | None:
        saved = self.steps.get(Steps.PLAN)
        return StoryPlan.model_validate(saved) if saved else None

    @property
    def translation(self) -> Translation | None:
        """The book's words in its language; for an English book (or before translation, or when the model could
        not write the chosen language) the plan's own."""
        saved = self.steps.get(Steps.TRANSLATION)
        plan = self.plan
        if saved and not (plan and self.language_note):
            return Translation.model_validate(saved)
        return Translation(title=plan.title, pages=[page.text for page in plan.pages]) if plan else None

    def language(self, requested: str) -> str:
        """The language the book is written in: the one asked for, unless the model could not write it."""
        return (self.steps.get(Steps.LANGUAGE) or {}).get("used") or requested

    @property
    def language_note(self) -> str | None:
        """Said to the reader when the book is not in the language they chose ("This model could not write ...")."""
        return (self.steps.get(Steps.LANGUAGE) or {}).get("note")

    @property
    def title(self) -> str | None:
        translation = self.translation
        return translation.title if translation else None

    def text(self, page: int) -> dict[str, Any] | None:
        return self.steps.get(Steps.text(page))

    def translated(self, key: str | int) -> dict[str, Any] | None:
        return self.steps.get(Steps.translated(key))

    def picture(self, page: int) -> dict[str, Any]:
        return self.steps.get(Steps.picture(page)) or {}

    def repaints(self, page: int) -> int:
        return int((self.steps.get(Steps.repaints(page)) or {}).get("count", 0))

    def rewrites(self, page: int) -> int:
        return int((self.steps.get(Steps.rewrites(page)) or {}).get("count", 0))

    @property
    def narration_note(self) -> str | None:
        return (self.steps.get(Steps.NARRATION_NOTE) or {}).get("message")

    def narration_data(self, page: int) -> dict[str, Any] | None:
        return self.steps.get(Steps.narration(page))

    @property
    def narrations(self) -> dict[int, PageNarration]:
        """Every saved page narration, by page (0 is the title)."""
        found: dict[int, PageNarration] = {}
        for name, data in self.steps.items():
            if name.startswith("narration:") and data.get("narration"):
                narration = PageNarration.model_validate(data["narration"])
                found[narration.page] = narration
        return found
