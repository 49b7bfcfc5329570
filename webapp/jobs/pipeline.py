"""A book, made and changed: each step one method, in the order the book is made.

1. `caption`: the vision service describes the photo.
2. `tell`: the outline is read line by line as the model writes it; the moment a page's beat is settled its
   picture is requested, and once the next beat exists its prose is written, then translated, then read aloud
   (`PagesInFlight` holds the rules of what runs at once). The plan and the translation are saved once every page
   is written; from then on each file of the book starts the moment what it shows exists (the PDF once every
   picture is painted, the audiobook once every page is read aloud and the cover painted).
3. `narrate`: every page whose saved narration does not speak its current words is read aloud (after an edit, a
   resume, a book made before its voice was ready).
4. `bind`: the PDF (on the book's print size, with its print check), the EPUB and the audiobook, side by side
   (`BookBinding`), each not started yet started now.
A finished book is changed by `repaint`, `rewrite` and `extend`, then bound again. Every piece is saved the moment
it exists and every step first looks for its saved result, so running an order again (after a crash, a restart or
a redelivered task) redoes only what is missing. Seeds follow one rule (`seeds.seed_for`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import partial

from shared.blocked_words import remove_blocked
from shared.clients import CaptionClient
from shared.errors import FabulaError
from webapp.jobs.artifacts import ArtifactStore
from webapp.jobs.book_assembly import BookBinding
from webapp.jobs.book_language import BookLanguage
from webapp.jobs.database import DATABASE_OUTAGES
from webapp.jobs.ledger import JobLedger
from webapp.jobs.models import Stage
from webapp.jobs.narration import PageNarrator
from webapp.jobs.orders import WorkOrder
from webapp.jobs.pages_in_flight import PagesInFlight, cover_scene, gather_all
from webapp.jobs.painting import PagePainter
from webapp.jobs.progress import COVER, Artifacts, RewriteRequest, Steps, WrittenPiece
from webapp.jobs.seeds import book_seed, seed_for
from webapp.story.options import StoryOptions
from webapp.story.plan import Character, OutlineDraft, StoryOutline, StoryPlan, Translation
from webapp.story.rules import is_language
from webapp.story.writer import StoryWriter

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineConfig:
    public_url: str
    caption_tokens: int = 160
    pictures_per_call: int = 8  # the most pictures one call of the image service paints (its FABULA_MAX_BATCH_SIZE)
    first_page_first: bool = False  # the other pictures wait for page 1 (the pictures share a CPU with the writer)


class StoryPipeline:
    def __init__(
        self, *, ledger: JobLedger, artifacts: ArtifactStore, captioner: CaptionClient, writer: StoryWriter, painter: PagePainter,
        narrator: PageNarrator | None, config: PipelineConfig,
    ) -> None:
        self.ledger, self.store, self.artifacts = ledger, ledger.store, artifacts
        self.captioner, self.writer, self.painter, self.narrator = captioner, writer, painter, narrator
        self.config = config
        self.language = BookLanguage(ledger, writer)

    async def run(self, order: WorkOrder) -> None:
        """Do what the order asks, then bind the book; a failure is told in plain words and keeps what was saved."""
        job_id = order.job_id
        options = StoryOptions.model_validate(self.ledger.start(job_id).options)
        binding = BookBinding(self.store, self.artifacts, self.config.public_url)
        try:
            if order.kind == "book":
                await self.make(job_id, options, binding)
            elif order.kind == "repaint":
                await self.repaint(job_id, options, order.page or 0)
            elif order.kind == "rewrite":
                await self.rewrite(job_id, options, order.page or 1, order.instruction)
            else:
                await self.extend(job_id, options, order.count)
            await self.ledger.timed(job_id, "book", self.bind(job_id, options, binding))
        except DATABASE_OUTAGES:
            raise  # the book is fine, its database is away: whoever runs the order tries it again later
        except FabulaError as exc:
            self.ledger.fail(job_id, exc.message, exc.error_type)
            return
        except Exception as exc:  # noqa: BLE001 - the job fails in plain words; the traceback goes to the log
            logger.exception("job failed unexpectedly")
            message = f"An unexpected error stopped this book ({type(exc).__name__}); its finished steps are kept and it can be resumed."
            self.ledger.fail(job_id, message, "internal_error")
            return
        finally:
            binding.cancel()  # a failed book: nothing waits for what was started
        self.ledger.done(job_id)

    async def make(self, job_id: str, options: StoryOptions, binding: BookBinding) -> None:
        caption = await self.ledger.timed(job_id, "caption", self.caption(job_id))
        plan = self.store.progress(job_id).plan
        if plan is None:
            await self.tell(job_id, caption, options, binding)
        else:  # a resumed book whose words are all saved: only pictures may be missing
            await self.ledger.timed(job_id, "illustrate", self.illustrate(job_id, plan, options))

    # ---- 1. the photo --------------------------------------------------------------------------------------
    async def caption(self, job_id: str) -> str:
        saved = self.store.progress(job_id).caption
        if saved:
            return saved
        self.ledger.enter(job_id, Stage.caption)
        response = await self.captioner.caption(self.artifacts.read(job_id, Artifacts.PHOTO), max_new_tokens=self.config.caption_tokens)
        caption = remove_blocked(response.caption, self.writer.blocked_words).strip() or "A photo."
        usable = is_language(caption)
        if not usable:
            logger.info("the caption does not read as language; the story follows the idea and the options")
        self.store.save_step(job_id, Steps.CAPTION, {"caption": caption, "model": response.model, "usable": usable})
        return caption

    # ---- 2. the story, its pictures and its voice, each piece started the moment what it needs exists -------
    async def tell(self, job_id: str, caption: str, options: StoryOptions, binding: BookBinding) -> None:
        seed, started = book_seed(job_id, options), time.perf_counter()
        pieces = PagesInFlight(
            options.pages, paint=partial(self.paint, job_id, options, seed), write=partial(self.write_page, job_id, caption, options, seed),
            read_aloud=partial(self.read_aloud, job_id, options) if options.narrate and self.narrator else None,
            save_draft=lambda draft: self.store.save_step(job_id, Steps.OUTLINE_DRAFT, draft.model_dump(mode="json")),
            pictures_per_call=self.config.pictures_per_call, first_page_first=self.config.first_page_first,
        )
        async with pieces:
            self.ledger.enter(job_id, Stage.plan)
            outline = await self.outline(job_id, caption, options, seed, pieces)
            self.ledger.took(job_id, "plan", time.perf_counter() - started)
            pieces.start_ready(_as_draft(outline), complete=True)
            pieces.paint(COVER, cover_scene(outline.title, outline.cover_prompt), outline.characters)  # unless asked for already
            self.ledger.enter(job_id, Stage.illustrate)
            title = await pieces.title(self.language.translated(job_id, "title", outline.title, options, outline.names, what="title"))
            written = await pieces.written()
            self.ledger.took(job_id, "write", time.perf_counter() - started)
            self.save_words(job_id, options, outline, title, written)
            await gather_all([self.painted(job_id, pieces, binding, started), self.read(job_id, pieces, binding)])

    async def painted(self, job_id: str, pieces: PagesInFlight, binding: BookBinding, started: float) -> None:
        """Every picture painted: the PDF, whose words are saved already, starts at once."""
        await pieces.painted()
        self.ledger.took(job_id, "illustrate", time.perf_counter() - started)
        binding.start(Artifacts.PDF, self.ledger.record(job_id))

    async def read(self, job_id: str, pieces: PagesInFlight, binding: BookBinding) -> None:
        """Every page read aloud and the cover painted: the audiobook starts at once, whatever pictures are still
        being painted (it shows only the cover)."""
        await pieces.read()
        await pieces.pictures[COVER]
        binding.start(Artifacts.AUDIOBOOK, self.ledger.record(job_id))

    async def outline(self, job_id: str, caption: str, options: StoryOptions, seed: int, pieces: PagesInFlight) -> StoryOutline:
        progress = self.store.progress(job_id)
        if progress.outline is not None:
            return progress.outline
        draft = progress.outline_draft
        if draft is not None:
            pieces.start_ready(draft)  # the pieces a previous run settled go on at once
        outline = await self.writer.outline(caption, options, seed=seed, draft=draft, on_beat=pieces.on_beat)
        self.store.save_step(job_id, Steps.OUTLINE, outline.model_dump())
        if outline.fallbacks:
            logger.info("outline pieces replaced by fallbacks", extra={"fields": {"pieces": outline.fallbacks}})
        return outline

    async def write_page(self, job_id: str, caption: str, options: StoryOptions, seed: int, draft: OutlineDraft, page: int) -> tuple[str, str]:
        """One page's English text and its translation (the same text for English books), each saved once written."""
        names = tuple(character.name for character in draft.characters or [])
        saved = self.store.progress(job_id).text(page)
        if saved is None:
            brief = self.writer.brief(caption, options, names)
            written = await self.writer.write_page(brief, draft.title or "", draft.beats, page, options.pages, seed=seed)
            saved = WrittenPiece(text=written.text, fallback=written.fallback)
            self.store.save_step(job_id, Steps.text(page), saved.model_dump())
        translated = await self.language.translated(job_id, page, saved.text, options, names)
        self.ledger.piece_saved(job_id, page, f"Page {page} written.")
        return saved.text, translated

    def save_words(self, job_id: str, options: StoryOptions, outline: StoryOutline, title: str, written: list[tuple[str, str]]) -> None:
        english = [text for text, _ in written]
        translation = Translation(title=title, pages=[translated for _, translated in written])
        if self.language.of(job_id, options) != options.language:  # the model could not write it: all in English
            translation = Translation(title=outline.title, pages=english)
        self.store.save_step(job_id, Steps.TRANSLATION, translation.model_dump())
        self.store.save_step(job_id, Steps.PLAN, outline.as_plan(english).model_dump())

    async def paint(self, job_id: str, options: StoryOptions, seed: int, page: int, scene: str, characters: list[Character]) -> None:
        await self.painter.paint(job_id, scene, characters, options, page, seed)

    async def illustrate(self, job_id: str, plan: StoryPlan, options: StoryOptions, pages: list[int] | None = None) -> None:
        """Paint the cover and every page whose picture is not saved yet, all requests in flight at once."""
        wanted = pages if pages is not None else [COVER, *range(1, len(plan.pages) + 1)]
        self.ledger.enter(job_id, Stage.illustrate, "Painting the pictures…")
        seed = book_seed(job_id, options)

        def scene(page: int) -> str:
            return cover_scene(plan.title, plan.cover_prompt) if page == COVER else plan.pages[page - 1].scene_prompt

        await gather_all([self.paint(job_id, options, seed, page, scene(page), plan.characters) for page in wanted])

    async def read_aloud(self, job_id: str, options: StoryOptions, page: int, text: str) -> None:
        if self.narrator is not None:
            await self.narrator.read_aloud(job_id, page, text, self.language.of(job_id, options))

    # ---- 3. the voice, for every page whose narration does not speak its words ------------------------------
    async def narrate(self, job_id: str, options: StoryOptions) -> bool:
        """True when a page was read aloud (again)."""
        if not options.narrate or self.narrator is None:
            return False
        language = self.language.of(job_id, options)
        missing = self.narrator.unread(job_id, language)
        if missing:
            self.ledger.enter(job_id, Stage.narrate)
            reading = gather_all([self.read_aloud(job_id, options, page, text) for page, text in missing.items()])
            await self.ledger.timed(job_id, "narrate", reading)
        self.narrator.forget_stale(job_id, language)
        return bool(missing)

    # ---- 4. the book ---------------------------------------------------------------------------------------
    async def bind(self, job_id: str, options: StoryOptions, binding: BookBinding) -> bytes:
        """Every file of the book; those `tell` started early are waited for (the audiobook made again when a page
        had to be read aloud again)."""
        reread = await self.narrate(job_id, options)
        record = self.ledger.enter(job_id, Stage.book)
        if reread:
            await binding.again(Artifacts.AUDIOBOOK, record)
        bound = await binding.finish(record)
        self.store.update(job_id, book_version=record.book_version + 1)
        self.store.save_step(job_id, Steps.BOOK, {"bytes": len(bound.pdf), "version": record.book_version + 1, "files": bound.files})
        return bound.pdf

    # ---- changing a finished book (the request side is `edits.EditRequests`) --------------------------------
    async def repaint(self, job_id: str, options: StoryOptions, page: int) -> None:
        plan = self.store.progress(job_id).plan
        if plan is not None:
            self.artifacts.path(job_id, Artifacts.picture(page)).unlink(missing_ok=True)
            self.artifacts.path(job_id, Artifacts.print_picture(page)).unlink(missing_ok=True)
            await self.illustrate(job_id, plan, options, pages=[page])

    async def rewrite(self, job_id: str, options: StoryOptions, page: int, instruction: str | None) -> None:
        progress = self.store.progress(job_id)
        asked, plan, words = progress.rewrite_request(page) or RewriteRequest(instruction=instruction), progress.plan, progress.words
        if asked.done or plan is None or words is None:
            return  # made already (a redelivered order), or nothing to rewrite
        redo = asked.count
        written = await self.writer.rewrite_page(plan, options, progress.caption or "", page, instruction, seed=seed_for(book_seed(job_id, options), redo))
        plan.pages[page - 1].text = written.text
        names = [character.name for character in plan.characters]
        words.pages[page - 1] = await self.language.translated(job_id, page, written.text, options, names, redo=redo)
        self.store.save_step(job_id, Steps.PLAN, plan.model_dump())
        self.store.save_step(job_id, Steps.TRANSLATION, words.model_dump())
        self.store.save_step(job_id, Steps.rewrites(page), asked.model_copy(update={"done": True}).model_dump())

    async def extend(self, job_id: str, options: StoryOptions, wanted: int | None) -> None:
        progress = self.store.progress(job_id)
        plan, words = progress.plan, progress.words
        if plan is None or words is None:
            return
        if wanted and len(plan.pages) < wanted:
            new_pages = await self.writer.continue_story(plan, options, progress.caption or "", wanted - len(plan.pages), seed=book_seed(job_id, options))
            names, first = [character.name for character in plan.characters], len(plan.pages) + 1
            texts = await gather_all([
                self.language.translated(job_id, page, item.text, options, names) for page, item in enumerate(new_pages, start=first)
            ])
            words.pages = words.pages[: len(plan.pages)] + texts  # a run cut short between the two saves added none
            plan.pages.extend(new_pages)
            self.store.save_step(job_id, Steps.PLAN, plan.model_dump())
            self.store.save_step(job_id, Steps.TRANSLATION, words.model_dump())
            record = self.ledger.record(job_id)
            self.store.update(job_id, pages_total=len(plan.pages), options={**record.options, "pages": len(plan.pages)})
        await self.illustrate(job_id, plan, options, pages=list(range(1, len(plan.pages) + 1)))


def _as_draft(outline: StoryOutline) -> OutlineDraft:
    return OutlineDraft(title=outline.title, characters=outline.characters, beats={page: item.beat for page, item in enumerate(outline.pages, start=1)})


__all__ = ["PipelineConfig", "StoryPipeline"]
