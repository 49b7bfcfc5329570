"""The main job: photo → caption → outline, streamed → (each page: its picture ‖ its text → translation) → book.

The outline is read line by line as the model writes it (`StoryWriter.outline`, `on_beat`): the moment a page's
beat is settled its picture is requested (the beat is the scene; the image service batches concurrent requests
on its GPU), and once the next beat exists too (so the page can lead into it) its prose is written and then
translated, each page in its own concurrent LLM calls. So the first page is finished long before the plan's last
line, and nothing waits for anything it does not need. Every piece is saved the moment it exists (the outline
draft too), and every step first looks for its saved result, so running a job again (after a crash, a restart or
a fault) redoes only what is missing.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from shared.blocked_words import remove_blocked
from shared.clients import CaptionClient, IllustrateClient
from shared.errors import FabulaError, InvalidRequest, UpstreamError
from shared.logs import job_id_var
from shared.schemas import ImageGenerationRequest
from webapp.jobs.artifacts import ArtifactStore
from webapp.jobs.edits import BookEdits
from webapp.jobs.narration import PageNarrator
from webapp.jobs.orders import Outcome, WorkOrder
from webapp.jobs.progress import COVER, Artifacts, Steps
from webapp.jobs.events import EventBus
from webapp.jobs.models import JobEvent, JobRecord, JobStatus, Stage
from webapp.jobs.safety_metrics import SAFETY
from webapp.jobs.store import JobStore
from webapp.story.languages import find_language
from webapp.story.options import StoryOptions
from webapp.story.picture_prompt import picture_prompt
from webapp.story.plan import Character, OutlineDraft, StoryOutline, StoryPlan, Translation
from webapp.story.prompts import Brief
from webapp.story.rules import is_language
from webapp.story.writer import StoryWriter

logger = logging.getLogger(__name__)
STAGE_TIMES_KEPT = 64

def image_name(page: int) -> str:
    return Artifacts.picture(page)


@dataclass
class PipelineConfig:
    public_url: str
    image_size: int = 1024
    image_steps: int | None = None
    max_concurrent_images: int = 25  # a whole 24-page book and its cover in flight at once
    caption_tokens: int = 160
    reference_strength: float = 0.6  # the book's default; a book's own option wins
    lease_s: float = 60.0  # a worker's hold on a book, renewed every third of it
    max_safety_repaints: int = 2


class StoryPipeline:
    def __init__(
        self,
        *,
        store: JobStore,
        artifacts: ArtifactStore,
        events: EventBus,
        captioner: CaptionClient,
        illustrator: IllustrateClient,
        writer: StoryWriter,
        config: PipelineConfig,
        narrator: PageNarrator | None = None,
    ) -> None:
        self.store = store
        self.artifacts = artifacts
        self.events = events
        self.captioner = captioner
        self.illustrator = illustrator
        self.writer = writer
        self.config = config
        self.narrator = narrator
        self.edits = BookEdits(self)
        self.stage_seconds: dict[str, dict[str, float]] = {}
        self._image_slots: asyncio.Semaphore | None = None

    # ---- running a work order (a whole book, or an edit) ------------------------------------------------------
    async def perform(self, order: WorkOrder, *, owner: str) -> Outcome:
        """Run `order` while holding the job's lease, so no two workers make one book at once.

        `skipped`: the job is gone, or already finished (a redelivered order). `held`: another worker holds it now;
        try again after its lease (`config.lease_s`) would have run out.
        """
        token = job_id_var.set(order.job_id)
        try:
            record = self.store.get(order.job_id)
            if record is None or record.status not in (JobStatus.queued, JobStatus.running):
                return Outcome.skipped
            if not self.store.acquire_lease(order.job_id, owner, self.config.lease_s):
                logger.info("book held by another worker; trying again later")
                return Outcome.held
            work = asyncio.ensure_future(self._work(order))
            lost = asyncio.Event()
            renewing = asyncio.ensure_future(self._keep_lease(order.job_id, owner, work, lost))
            try:
                await work
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if lost.is_set() and not (current and current.cancelling()):
                    logger.warning("the book's lease was lost (the job is gone, or another worker holds it); stopped")
                    return Outcome.skipped
                raise
            finally:
                work.cancel()
                renewing.cancel()
                self.store.release_lease(order.job_id, owner)
            return Outcome.done
        finally:
            job_id_var.reset(token)

    async def _keep_lease(self, job_id: str, owner: str, work: asyncio.Future, lost: asyncio.Event) -> None:
        """Renew the lease every third of it; stop the work when it is gone (the job was deleted, or the lease ran
        out and another worker took the book), so two workers never make one book at once."""
        renewed = time.monotonic()
        while True:
            await asyncio.sleep(self.config.lease_s / 3)
            try:
                held = await asyncio.to_thread(self.store.renew_lease, job_id, owner, self.config.lease_s)
            except Exception:  # noqa: BLE001 - a database blip: try again while the lease still runs
                logger.warning("could not renew the book's lease", exc_info=True)
                held = time.monotonic() - renewed < self.config.lease_s * 2 / 3
            else:
                renewed = time.monotonic() if held else renewed
            if not held:
                lost.set()
                work.cancel()
                return

    async def _work(self, order: WorkOrder) -> None:
        job_id = order.job_id
        record = self._set(job_id, status=JobStatus.running, error=None, error_type=None)
        try:
            if order.kind == "book":
                options = StoryOptions.model_validate(record.options)
                caption = await self._timed(job_id, "caption", self.caption(job_id))
                plan = self.store.progress(job_id).plan
                if plan is None:
                    await self.tell(job_id, caption, options)
                else:
                    await self._timed(job_id, "illustrate", self.illustrate(job_id, plan, options))
            else:
                await self.edits.perform(order)
            await self._timed(job_id, "book", self.build_book(job_id))
        except FabulaError as exc:
            self._fail(job_id, exc.message, exc.error_type)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the job fails in plain words; the traceback goes to the log
            logger.exception("job failed unexpectedly")
            self._fail(job_id, f"An unexpected error stopped this book ({type(exc).__name__}); its finished steps are kept and it can be resumed.", "internal_error")
            return
        self._emit(self._set(job_id, status=JobStatus.done, stage=Stage.done), "Your book is ready.")

    # ---- steps ---------------------------------------------------------------------------------------------
    async def caption(self, job_id: str) -> str:
        saved = self.store.progress(job_id).caption
        if saved:
            return saved
        self._emit(self._set(job_id, stage=Stage.caption), "Looking at the photo…")
        response = await self.captioner.caption(self.artifacts.read(job_id, Artifacts.PHOTO), max_new_tokens=self.config.caption_tokens)
        caption = remove_blocked(response.caption, self.writer.blocked_words).strip() or "A photo."
        usable = is_language(caption)
        if not usable:
            logger.info("the caption does not read as language; the story follows the idea and the options")
        self.store.save_step(job_id, Steps.CAPTION, {"caption": caption, "model": response.model, "usable": usable})
        return caption

    async def tell(self, job_id: str, caption: str, options: StoryOptions) -> StoryPlan:
        """Outline, pictures, texts and translations, each started the moment what it needs exists."""
        seed = self.book_seed(job_id, options)
        pages = options.pages
        started = time.perf_counter()
        pictures: dict[int, asyncio.Task] = {}
        texts: dict[int, asyncio.Task] = {}
        voices: dict[int, asyncio.Task] = {}
        title: dict[str, str] = {}

        def read_aloud(task: asyncio.Task, page: int) -> None:
            if options.narrate and self.narrator is not None and not task.cancelled() and task.exception() is None:
                text = task.result()[1] if page else task.result()
                voices[page] = asyncio.ensure_future(self.narrate_page(job_id, page, text, options))

        def start_ready(draft: OutlineDraft, complete: bool) -> None:
            characters = draft.characters or []
            for page in sorted(draft.beats):
                if page not in pictures:
                    pictures[page] = asyncio.ensure_future(self.paint_page(job_id, draft.beats[page], characters, options, page, seed))
                opening = page == 1 and draft.opening  # the photo's scene: it needs no plan around it
                if page not in texts and (page + 1 in draft.beats or page == pages or complete or opening):
                    brief = self.writer.brief(caption, options, tuple(character.name for character in characters))
                    texts[page] = asyncio.ensure_future(self.write_page(job_id, brief, draft.title or "", dict(draft.beats), page, pages, seed))
                    texts[page].add_done_callback(lambda task, page=page: read_aloud(task, page))

        async def on_beat(draft: OutlineDraft, page: int) -> None:
            self.store.save_step(job_id, Steps.OUTLINE_DRAFT, draft.model_dump(mode="json"))
            start_ready(draft, complete=False)

        self._emit(self._set(job_id, stage=Stage.plan), "Planning the story…")
        try:
            outline = await self.outline(job_id, caption, options, seed, on_beat, start_ready)
            self._record_stage(job_id, "plan", time.perf_counter() - started)
            start_ready(_as_draft(outline), complete=True)
            pictures[COVER] = asyncio.ensure_future(self.paint_page(job_id, f"{outline.title}: {outline.cover_prompt}", outline.characters, options, COVER, seed))
            self._emit(self._set(job_id, stage=Stage.illustrate), "Writing and painting the pages…")
            title_task = asyncio.ensure_future(self.translated(job_id, "title", outline.title, options, outline.names, what="title"))
            title_task.add_done_callback(lambda task: read_aloud(task, COVER))
            title["text"] = await title_task
            written = await _gather_all([texts[page] for page in range(1, pages + 1)])
            self._record_stage(job_id, "write", time.perf_counter() - started)
            plan = outline.as_plan([english for english, _ in written])
            translation = Translation(title=title["text"], pages=[translated for _, translated in written])
            if self.language_of(job_id, options) != options.language:
                # The model could not write the book's language: every piece is the English it could write.
                translation = Translation(title=outline.title, pages=[english for english, _ in written])
            self.store.save_step(job_id, Steps.TRANSLATION, translation.model_dump())
            self.store.save_step(job_id, Steps.PLAN, plan.model_dump())
            await _gather_all(list(pictures.values()))
            self._record_stage(job_id, "illustrate", time.perf_counter() - started)
            await _gather_all(list(voices.values()))
        finally:
            for task in [*pictures.values(), *texts.values(), *voices.values()]:
                task.cancel()
        return plan

    async def outline(self, job_id: str, caption: str, options: StoryOptions, seed: int, on_beat: Any, start_ready: Any) -> StoryOutline:
        progress = self.store.progress(job_id)
        if progress.outline is not None:
            return progress.outline
        draft = progress.outline_draft
        if draft is not None:
            start_ready(draft, complete=False)  # the pieces a previous run settled go on at once
        outline = await self.writer.outline(caption, options, seed=seed, draft=draft, on_beat=on_beat)
        self.store.save_step(job_id, Steps.OUTLINE, outline.model_dump())
        if outline.fallbacks:
            logger.info("outline pieces replaced by fallbacks", extra={"fields": {"pieces": outline.fallbacks}})
        return outline

    async def write_page(self, job_id: str, brief: Brief, title: str, beats: dict[int, str], page: int, pages: int, seed: int) -> tuple[str, str]:
        """One page's English text and its translation (the same text for English books), each saved once written."""
        saved = self.store.progress(job_id).text(page)
        if saved is None:
            written = await self.writer.write_page(brief, title, beats, page, pages, seed=seed)
            saved = {"text": written.text, "fallback": written.fallback}
            self.store.save_step(job_id, Steps.text(page), saved)
        translated = await self.translated(job_id, str(page), saved["text"], brief.options, brief.names)
        self._emit(self.record(job_id), f"Page {page} written.", page=page)
        return saved["text"], translated

    async def translated(self, job_id: str, key: str, text: str, options: StoryOptions, names: Any, *, what: str = "page") -> str:
        """One piece in the book's language. A piece the model cannot translate within the rules (after its tries)
        turns the whole book to English, said plainly everywhere: one language per book, never a mix."""
        if self.language_of(job_id, options) == "en":
            return text
        saved = self.store.steps(job_id).get(Steps.translated(key))
        if saved is None:
            written = await self.writer.translate(text, options.language, names, what=what, seed=self.book_seed(job_id, options) + len(key))
            if written.fallback:
                self.write_in_english(job_id, options.language)
                return text
            saved = {"text": written.text, "fallback": False}
            self.store.save_step(job_id, Steps.translated(key), saved)
        return saved["text"] if self.language_of(job_id, options) != "en" else text

    def language_of(self, job_id: str, options: StoryOptions) -> str:
        """The language the book is being written in (the chosen one, unless the model could not write it)."""
        if options.language == "en":
            return "en"
        return self.store.progress(job_id).language(options.language)

    def write_in_english(self, job_id: str, requested: str) -> None:
        """Record, once, that the model could not write `requested`: the book is made in English and says so."""
        if self.store.progress(job_id).language_note:
            return
        name = find_language(requested).name
        note = f"This model could not write {name}; the book is in English."
        logger.warning("the model could not write the book's language; making it in English", extra={"fields": {"language": requested}})
        self.store.save_step(job_id, Steps.LANGUAGE, {"requested": requested, "used": "en", "note": note})
        self._emit(self.record(job_id), note)

    async def illustrate(self, job_id: str, plan: StoryPlan, options: StoryOptions, pages: list[int] | None = None) -> None:
        """Paint the cover and every page whose picture is not saved yet, all requests in flight at once."""
        wanted = pages if pages is not None else [COVER, *range(1, len(plan.pages) + 1)]
        self._emit(self._set(job_id, stage=Stage.illustrate), "Painting the pictures…")
        seed = self.book_seed(job_id, options)

        def scene(page: int) -> str:
            return f"{plan.title}: {plan.cover_prompt}" if page == COVER else plan.pages[page - 1].scene_prompt

        await _gather_all([self.paint_page(job_id, scene(page), plan.characters, options, page, seed) for page in wanted])

    async def paint_page(self, job_id: str, scene: str, characters: list[Character], options: StoryOptions, page: int, seed: int) -> None:
        """Paint one picture (with the photo as the likeness reference where its subject appears), saved once it
        passes the safety classifier; a flagged picture is painted again with other seeds, then replaced by the
        service's calm placeholder and the page marked."""
        if self.artifacts.exists(job_id, image_name(page)):
            return
        picture = picture_prompt(scene, [(character.name, character.description) for character in characters], options.style)
        redo = self.store.progress(job_id).repaints(page)
        size = self.config.image_size
        strength = self.config.reference_strength if options.reference_strength is None else options.reference_strength
        reference = self._reference(job_id, scene, characters, page) if strength > 0 else None
        if self._image_slots is None:
            self._image_slots = asyncio.Semaphore(self.config.max_concurrent_images)
        for attempt in range(self.config.max_safety_repaints + 1):
            request = ImageGenerationRequest(
                prompt=picture.prompt, negative_prompt=picture.negative_prompt, n=1, size=f"{size}x{size}",
                num_inference_steps=self.config.image_steps, seed=seed + 7919 * redo + 104_729 * attempt, response_format="b64_json",
                reference_image=reference, reference_strength=strength if reference else None,
            )
            async with self._image_slots:
                response = await self.illustrator.generate(request)
            if not response.data:
                raise UpstreamError("The image service answered without an image.", transient=True)
            image = response.data[0]
            if not image.flagged:
                break
            logger.warning("picture flagged by the safety classifier", extra={"fields": {"page": page, "attempt": attempt + 1, "seed": image.seed}})
            SAFETY.flagged.inc()
        if image.flagged:
            logger.warning("flagged picture replaced by a placeholder", extra={"fields": {"page": page}})
            SAFETY.replaced.inc()
        self.artifacts.write(job_id, image_name(page), base64.b64decode(image.b64_json))
        self.store.save_step(
            job_id, Steps.picture(page),
            {"seed": image.seed, "prompt": picture.prompt, "reference": reference is not None, "flagged": image.flagged, "repaints": attempt},
        )
        record = self._set(job_id, pages_done=self._pages_done(job_id, self.record(job_id).pages_total))
        self._emit(record, "Cover painted." if page == COVER else f"Page {page} painted.", page=page)

    def _reference(self, job_id: str, scene: str, characters: list[Character], page: int) -> str | None:
        """The uploaded photo, for the cover, the photo's own scene (page 1) and every page whose scene names the
        main character (the photo's subject: the plan's first character)."""
        if not self.artifacts.exists(job_id, Artifacts.PHOTO):
            return None
        subject = characters[0].name.lower() if characters else ""
        if page not in (COVER, 1) and subject and subject not in scene.lower():
            return None
        return base64.b64encode(self.artifacts.read(job_id, Artifacts.PHOTO)).decode()

    async def narrate_page(self, job_id: str, page: int, text: str, options: StoryOptions) -> None:
        """Read one page (0: the title) aloud; a language with no voice leaves the book silent and says why."""
        if self.narrator is None or not text.strip():
            return
        try:
            await self.narrator.narrate(job_id, page, text, self.language_of(job_id, options))
        except InvalidRequest as exc:
            if exc.param not in ("language", "voice", "input"):  # no voice for the language, or for its script
                raise
            if not self.store.progress(job_id).narration_note:
                logger.info("no voice for this book", extra={"fields": {"reason": exc.message}})
                language = self.language_of(job_id, options)
                self.store.save_step(job_id, Steps.NARRATION_NOTE, {"message": exc.message, "param": exc.param, "language": language})

    async def narrate_book(self, job_id: str, options: StoryOptions) -> None:
        """Narrate every page whose saved narration does not speak its current text (after an edit, a resume)."""
        progress = self.store.progress(job_id)
        language = self.language_of(job_id, options)
        note = progress.steps.get(Steps.NARRATION_NOTE) or {}
        if note and note.get("language", language) != language:
            # Said of another language (the one chosen, before the model was found not to write it): not this book's.
            self.store.delete_step(job_id, Steps.NARRATION_NOTE)
            note = {}
        if not options.narrate or self.narrator is None or progress.plan is None or note.get("param") in ("language", "voice"):
            return  # no voice for this language at all; a page the voice could not read is tried again when it changes
        translation = progress.translation
        assert translation is not None  # the plan exists
        texts = {COVER: translation.title, **dict(enumerate(translation.pages, start=1))}
        missing = {page: text for page, text in texts.items() if self.narrator.saved(job_id, page, text, language) is None}
        if missing:
            self._emit(self._set(job_id, stage=Stage.narrate), "Reading the book aloud…")
            await self._timed(job_id, "narrate", _gather_all([self.narrate_page(job_id, page, text, options) for page, text in missing.items()]))

    async def build_book(self, job_id: str) -> bytes:
        from webapp.jobs.book_assembly import bind_book

        options = StoryOptions.model_validate(self.record(job_id).options)
        await self.narrate_book(job_id, options)
        record = self._emit(self._set(job_id, stage=Stage.book), "Binding the book…")
        bound = await asyncio.to_thread(bind_book, record, self.store, self.artifacts, self.config.public_url)
        self._set(job_id, book_version=record.book_version + 1)
        self.store.save_step(job_id, Steps.BOOK, {"bytes": len(bound.pdf), "version": record.book_version + 1, "files": bound.files})
        return bound.pdf

    # ---- helpers -------------------------------------------------------------------------------------------
    def book_seed(self, job_id: str, options: StoryOptions) -> int:
        if options.seed is not None:
            return options.seed
        return int.from_bytes(job_id.encode()[-8:], "little") % (2**31 - 8000)

    def _pages_done(self, job_id: str, pages: int) -> int:
        return sum(1 for page in range(1, pages + 1) if self.artifacts.exists(job_id, image_name(page)))

    def record(self, job_id: str) -> JobRecord:
        record = self.store.get(job_id)
        if record is None:
            raise KeyError(job_id)
        return record

    def _set(self, job_id: str, **changes: object) -> JobRecord:
        return self.store.update(job_id, **changes)

    def _emit(self, record: JobRecord, message: str, *, page: int | None = None, stage: Stage | None = None) -> JobRecord:
        self.events.publish(
            JobEvent(
                job_id=record.id, status=record.status, stage=stage or record.stage, pages_done=record.pages_done,
                pages_total=record.pages_total, message=message, page=page, error=record.error,
            )
        )
        return record

    def _fail(self, job_id: str, message: str, error_type: str) -> JobRecord | None:
        logger.warning("job failed", extra={"fields": {"error": message}})
        if self.store.get(job_id) is None:
            return None  # deleted while it was being made: nothing left to mark
        record = self._set(job_id, status=JobStatus.failed, error=message, error_type=error_type)
        self._emit(record, message)
        return record

    async def _timed(self, job_id: str, stage: str, step: Coroutine[Any, Any, Any]) -> Any:
        started = time.perf_counter()
        try:
            return await step
        finally:
            self._record_stage(job_id, stage, time.perf_counter() - started)

    def _record_stage(self, job_id: str, stage: str, seconds: float) -> None:
        """Seconds per stage of the most recent books (for the CLI and the benchmarks); a long-lived web or worker
        process keeps only the last `STAGE_TIMES_KEPT` books, so the table cannot grow without end."""
        self.stage_seconds.setdefault(job_id, {})[stage] = seconds
        while len(self.stage_seconds) > STAGE_TIMES_KEPT:
            self.stage_seconds.pop(next(iter(self.stage_seconds)))


def _as_draft(outline: StoryOutline) -> OutlineDraft:
    return OutlineDraft(title=outline.title, characters=outline.characters, beats={page: item.beat for page, item in enumerate(outline.pages, start=1)})


async def _gather_all(awaitables: list) -> list:
    """Wait for all; the first failure is raised once every one has ended (so none is left running unseen)."""
    results = await asyncio.gather(*awaitables, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


__all__ = ["COVER", "PipelineConfig", "StoryPipeline", "image_name"]
