"""A story's progress: the one place that knows the names of its saved steps and of its artifacts.

The job store keeps each step as a small JSON document under a name, and the artifact folder keeps each file
under a name; `StoryProgress` reads them as typed values, and `Steps`/`Artifacts` name them, so no other module
spells a key. A `StoryProgress` is a snapshot: read it once per decision (`JobStore.progress(job_id)`), not once
per field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from webapp.book.narration import PageNarration
from webapp.story.plan import OutlineDraft, StoryOutline, StoryPlan, Translation

COVER = 0


class WrittenPiece(BaseModel):
    """A page's text, or a translated piece; `fallback`: the model could not write it within the rules."""

    text: str
    fallback: bool = False


class PaintedPicture(BaseModel):
    """How a page's picture was painted: its seed and prompt, whether the photo guided it, whether the safety
    classifier flagged it on every try (the page shows a calm placeholder), how many times it was repainted, and
    by which model."""

    seed: int | None = None
    prompt: str = ""
    reference: bool = False
    flagged: bool = False
    repaints: int = 0
    model: str | None = None  # the image service's model: "photo-restyle" when the photo was restyled, not painted


class RewriteRequest(BaseModel):
    """The latest rewrite asked for a page; `done` once it is made, so a redelivered order changes nothing more."""

    count: int = 1
    instruction: str | None = None
    done: bool = False


class NarrationNote(BaseModel):
    """Why the book, or a page, is not read aloud: the narrate service's words and the request field at fault."""

    message: str
    param: str | None = None
    language: str | None = None


class Artifacts:
    """File names in a story's artifact folder."""

    PHOTO = "photo.jpg"
    LOGO = "logo.png"
    PDF = "book.pdf"
    EPUB = "book.epub"
    AUDIOBOOK = "book.m4b"
    PRINT_CHECK = "print-check.json"  # what a print shop needs to know of the print PDF

    @staticmethod
    def picture(page: int) -> str:
        return "cover.png" if page == COVER else f"page-{page:02d}.png"

    @staticmethod
    def print_picture(page: int) -> str:
        """A page's picture (the cover's too) upscaled for a print book; the reader and the EPUB never use it."""
        return f"print-{Artifacts.picture(page)}"

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
    ORDER = "order"  # the job's last scheduled work order, so a restart or a resume runs it again
    STAGE_TIMES = "stage_times"  # seconds per stage of the latest run, for the CLI and the benchmarks

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

    @property
    def caption(self) -> str | None:
        saved = self.steps.get(Steps.CAPTION)
        return saved["caption"] if saved else None

    @property
    def caption_step(self) -> dict[str, Any] | None:
        """The caption with the model that wrote it and whether it reads as language (copied to a new version)."""
        return self.steps.get(Steps.CAPTION)

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
    def words(self) -> Translation | None:
        """The book's words in its language: the translation; for an English book, or when the model could not write
        the chosen language, the plan's own text. While the pages are still being written (no plan yet): each piece
        as far as it exists, translated where that is done, for every page the outline has settled so far (while it
        is still being streamed too, so the first pages show long before the plan's last line). None before any."""
        plan = self.plan
        if plan is not None:
            english = [page.text for page in plan.pages]
            saved = self.steps.get(Steps.TRANSLATION)
            if not saved or self.language_note:
                return Translation(title=plan.title, pages=english)
            translation = Translation.model_validate(saved)
            # A run cut short between saving the plan and its translation (adding pages): the new pages in English.
            pages = translation.pages[: len(english)] + english[len(translation.pages) :]
            return Translation(title=translation.title, pages=pages)
        written = self.english
        if written is None:
            return None
        in_english = self.language_note is not None

        def piece(key: str | int, text: str) -> str:
            translated = None if in_english else self.translated(key)
            return translated.text if translated else text

        pages = [piece(page, text) for page, text in enumerate(written.pages, start=1)]
        return Translation(title=piece("title", written.title) if written.title else "", pages=pages)

    @property
    def english(self) -> Translation | None:
        """The book's words as the model first wrote them (the plan's, else the pages written so far)."""
        plan = self.plan
        if plan is not None:
            return Translation(title=plan.title, pages=[page.text for page in plan.pages])
        outline = self.outline
        if outline is not None:
            return Translation(title=outline.title, pages=[self._written(page) for page in range(1, len(outline.pages) + 1)])
        draft = self.outline_draft  # the outline while it is being streamed: the pages settled so far
        if draft is None or not draft.beats:
            return None
        return Translation(title=draft.title or "", pages=[self._written(page) for page in range(1, max(draft.beats) + 1)])

    def _written(self, page: int) -> str:
        written = self.text(page)
        return written.text if written else ""

    def language(self, requested: str) -> str:
        """The language the book is written in: the one asked for, unless the model could not write it."""
        return (self.steps.get(Steps.LANGUAGE) or {}).get("used") or requested

    @property
    def language_note(self) -> str | None:
        """Said to the reader when the book is not in the language they chose ("This model could not write ...")."""
        return (self.steps.get(Steps.LANGUAGE) or {}).get("note")

    @property
    def title(self) -> str | None:
        words = self.words
        return words.title if words else None

    def text(self, page: int) -> WrittenPiece | None:
        saved = self.steps.get(Steps.text(page))
        return WrittenPiece.model_validate(saved) if saved else None

    def translated(self, key: str | int) -> WrittenPiece | None:
        saved = self.steps.get(Steps.translated(key))
        return WrittenPiece.model_validate(saved) if saved else None

    def picture(self, page: int) -> PaintedPicture | None:
        saved = self.steps.get(Steps.picture(page))
        return PaintedPicture.model_validate(saved) if saved else None

    def repaints(self, page: int) -> int:
        return int((self.steps.get(Steps.repaints(page)) or {}).get("count", 0))

    def rewrites(self, page: int) -> int:
        return int((self.steps.get(Steps.rewrites(page)) or {}).get("count", 0))

    def rewrite_request(self, page: int) -> RewriteRequest | None:
        saved = self.steps.get(Steps.rewrites(page))
        return RewriteRequest.model_validate(saved) if saved else None

    @property
    def narration_note(self) -> str | None:
        note = self.narration_problem
        return note.message if note else None

    @property
    def narration_problem(self) -> NarrationNote | None:
        saved = self.steps.get(Steps.NARRATION_NOTE)
        return NarrationNote.model_validate(saved) if saved else None

    @property
    def order(self) -> dict[str, Any] | None:
        """The job's last scheduled work order, as it travels (a `WorkOrder`'s fields)."""
        return self.steps.get(Steps.ORDER)

    @property
    def stage_seconds(self) -> dict[str, float]:
        return dict(self.steps.get(Steps.STAGE_TIMES) or {})

    def narration_data(self, page: int) -> dict[str, Any] | None:
        return self.steps.get(Steps.narration(page))

    @property
    def spoken(self) -> dict[int, PageNarration]:
        """The saved narrations that speak the book's current words, by page (0 is the title): a page whose text
        changed since it was read aloud (a rewrite) has none until it is read again, so no old words are played."""
        words = self.words if self.plan is not None else None
        if words is None:
            return {}
        texts = {COVER: words.title, **dict(enumerate(words.pages, start=1))}
        return {
            page: narration for page, narration in self.narrations.items()
            if page in texts and (self.narration_data(page) or {}).get("text") == texts[page]
        }

    @property
    def narrations(self) -> dict[int, PageNarration]:
        """Every saved page narration, by page (0 is the title), whatever text it speaks."""
        found: dict[int, PageNarration] = {}
        for name, data in self.steps.items():
            if name.startswith("narration:") and data.get("narration"):
                narration = PageNarration.model_validate(data["narration"])
                found[narration.page] = narration
        return found
