"""The main job: photo → caption → outline → (write and translate each page ‖ illustrate cover and pages) → book.

The outline (title, character sheet, a beat and a scene prompt per page) is one short structured call; as soon as
it exists every picture is requested at once (the image service batches them on its GPU) while each page's text
is written and translated in its own concurrent LLM call, so the LLM's long writing overlaps the painting instead
of preceding it. Every step's result is saved the moment it exists, and every step first looks for its saved
result, so running a job again (after a crash, a restart or a fault) redoes only what is missing.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from dataclasses import dataclass

from shared.clients import CaptionClient, IllustrateClient
from shared.errors import FabulaError, UpstreamError
from shared.logs import job_id_var
from shared.schemas import ImageGenerationRequest
from webapp.jobs.artifacts import ArtifactStore
from webapp.jobs.events import EventBus
from webapp.jobs.models import JobEvent, JobRecord, JobStatus, Stage
from webapp.jobs.store import JobStore
from webapp.story.options import StoryOptions
from webapp.story.plan import StoryOutline, StoryPlan, Translation
from webapp.story.prompts import scene_image_prompt
from webapp.story.writer import StoryWriter

logger = logging.getLogger(__name__)

COVER = 0


def image_name(page: int) -> str:
    return "cover.png" if page == COVER else f"page-{page:02d}.png"


@dataclass
class PipelineConfig:
    public_url: str
    image_size: int = 1024
    image_steps: int | None = None
    max_concurrent_images: int = 25  # a whole 24-page book and its cover in flight at once
    caption_tokens: int = 160


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
    ) -> None:
        self.store = store
        self.artifacts = artifacts
        self.events = events
        self.captioner = captioner
        self.illustrator = illustrator
        self.writer = writer
        self.config = config
        self.stage_seconds: dict[str, dict[str, float]] = {}

    # ---- running a whole job -------------------------------------------------------------------------------
    async def run(self, job_id: str) -> JobRecord:
        token = job_id_var.set(job_id)
        try:
            return await self._run(job_id)
        finally:
            job_id_var.reset(token)

    async def _run(self, job_id: str) -> JobRecord:
        record = self._require(job_id)
        options = StoryOptions.model_validate(record.options)
        self._set(job_id, status=JobStatus.running, error=None, error_type=None)
        try:
            caption = await self._timed(job_id, "caption", self.caption(job_id))
            saved_plan = self.store.steps(job_id).get("plan")
            if saved_plan is None:
                outline = await self._timed(job_id, "plan", self.outline(job_id, caption, options))
                sketch = outline.as_plan()
                results = await asyncio.gather(
                    self._timed(job_id, "write", self.write(job_id, caption, outline, options)),
                    self._timed(job_id, "illustrate", self.illustrate(job_id, sketch, options)),
                    return_exceptions=True,
                )
            else:
                results = [await self._timed(job_id, "illustrate", self.illustrate(job_id, StoryPlan.model_validate(saved_plan), options))]
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            await self._timed(job_id, "book", self.build_book(job_id))
        except FabulaError as exc:
            return self._fail(job_id, exc.message, exc.error_type)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the job fails in plain words; the traceback goes to the log
            logger.exception("job failed unexpectedly")
            return self._fail(job_id, f"An unexpected error stopped this book ({type(exc).__name__}); its finished steps are kept and it can be resumed.", "internal_error")
        record = self._set(job_id, status=JobStatus.done, stage=Stage.done)
        self._emit(record, "Your book is ready.")
        return record

    # ---- steps ---------------------------------------------------------------------------------------------
    async def caption(self, job_id: str) -> str:
        saved = self.store.steps(job_id).get("caption")
        if saved:
            return saved["caption"]
        self._emit(self._set(job_id, stage=Stage.caption), "Looking at the photo…")
        response = await self.captioner.caption(self.artifacts.read(job_id, "photo.jpg"), max_new_tokens=self.config.caption_tokens)
        caption = response.caption.strip() or "A photo."
        self.store.save_step(job_id, "caption", {"caption": caption, "model": response.model})
        return caption

    async def outline(self, job_id: str, caption: str, options: StoryOptions) -> StoryOutline:
        saved = self.store.steps(job_id).get("outline")
        if saved:
            return StoryOutline.model_validate(saved)
        self._emit(self._set(job_id, stage=Stage.plan), "Planning the story…")
        outline = await self.writer.outline(caption, options)
        self.store.save_step(job_id, "outline", outline.model_dump())
        self._set(job_id, pages_total=len(outline.pages))
        return outline

    async def write(self, job_id: str, caption: str, outline: StoryOutline, options: StoryOptions) -> StoryPlan:
        """Write every page's text (and its translation) concurrently, then save the whole plan and translation."""
        names = [character.name for character in outline.characters]
        translating = options.language != "en"
        self._emit(self._require(job_id), "Writing and translating the pages…" if translating else "Writing the pages…", stage=Stage.translate if translating else Stage.plan)

        async def page(number: int) -> tuple[str, str]:
            steps = self.store.steps(job_id)
            text = (steps.get(f"text:{number}") or {}).get("text")
            if text is None:
                text = await self.writer.write_page(caption, options, outline, number)
                self.store.save_step(job_id, f"text:{number}", {"text": text})
            translated = text
            if translating:
                translated = (steps.get(f"translation:{number}") or {}).get("text")
                if translated is None:
                    translated = (await self.writer.translate_texts([text], options.language, names))[0]
                    self.store.save_step(job_id, f"translation:{number}", {"text": translated})
            self._emit(self._require(job_id), f"Page {number} written.")
            return text, translated

        async def title() -> str:
            if not translating:
                return outline.title
            saved = (self.store.steps(job_id).get("translation:title") or {}).get("text")
            if saved is None:
                saved = (await self.writer.translate_texts([outline.title], options.language, names))[0]
                self.store.save_step(job_id, "translation:title", {"text": saved})
            return saved

        results = await asyncio.gather(title(), *(page(number) for number in range(1, len(outline.pages) + 1)), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        translated_title, pages = results[0], results[1:]
        plan = outline.as_plan([text for text, _ in pages])  # type: ignore[misc]
        translation = Translation(title=translated_title, pages=[translated for _, translated in pages])  # type: ignore[arg-type, misc]
        self.store.save_step(job_id, "translation", translation.model_dump())
        self.store.save_step(job_id, "plan", plan.model_dump())
        return plan

    async def illustrate(self, job_id: str, plan: StoryPlan, options: StoryOptions, pages: list[int] | None = None) -> None:
        """Paint the cover and every page whose picture is not saved yet, all requests in flight at once."""
        wanted = pages if pages is not None else [COVER, *range(1, len(plan.pages) + 1)]
        missing = [page for page in wanted if not self.artifacts.exists(job_id, image_name(page))]
        self._emit(self._set(job_id, stage=Stage.illustrate, pages_done=self._pages_done(job_id, plan)), "Painting the pictures…")
        limit = asyncio.Semaphore(self.config.max_concurrent_images)
        seed = self._book_seed(job_id, options)

        async def paint(page: int) -> None:
            async with limit:
                await self.paint_page(job_id, plan, options, page, seed)

        results = await asyncio.gather(*(paint(page) for page in missing), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def paint_page(self, job_id: str, plan: StoryPlan, options: StoryOptions, page: int, seed: int) -> None:
        scene = plan.cover_prompt if page == COVER else plan.pages[page - 1].scene_prompt
        if page == COVER:
            scene = f"Book cover illustration for '{plan.title}': {scene}"
        prompt, negative = scene_image_prompt(scene, plan, options.style)
        redo = self.store.steps(job_id).get(f"redo:{page}", {}).get("count", 0)
        size = self.config.image_size
        request = ImageGenerationRequest(
            prompt=prompt[:3500], negative_prompt=negative, n=1, size=f"{size}x{size}",
            num_inference_steps=self.config.image_steps, seed=seed + 7919 * redo, response_format="b64_json",
        )
        response = await self.illustrator.generate(request)
        if not response.data:
            raise UpstreamError("The image service answered without an image.", transient=True)
        self.artifacts.write(job_id, image_name(page), base64.b64decode(response.data[0].b64_json))
        self.store.save_step(job_id, f"image:{page}", {"seed": response.data[0].seed, "prompt": prompt})
        record = self._set(job_id, pages_done=self._pages_done(job_id, plan))
        self._emit(record, "Cover painted." if page == COVER else f"Page {page} painted.", page=page)

    async def build_book(self, job_id: str) -> bytes:
        from webapp.jobs.book_assembly import assemble_book

        record = self._emit(self._set(job_id, stage=Stage.book), "Binding the book…")
        steps = self.store.steps(job_id)
        pdf = await asyncio.to_thread(assemble_book, record, steps, self.artifacts, self.config.public_url)
        self.artifacts.write(job_id, "book.pdf", pdf)
        self._set(job_id, book_version=record.book_version + 1)
        self.store.save_step(job_id, "book", {"bytes": len(pdf), "version": record.book_version + 1})
        return pdf

    # ---- helpers -------------------------------------------------------------------------------------------
    def _book_seed(self, job_id: str, options: StoryOptions) -> int:
        if options.seed is not None:
            return options.seed
        return int.from_bytes(job_id.encode()[-8:], "little") % (2**31 - 8000)

    def _pages_done(self, job_id: str, plan: StoryPlan) -> int:
        return sum(1 for page in range(1, len(plan.pages) + 1) if self.artifacts.exists(job_id, image_name(page)))

    def _require(self, job_id: str) -> JobRecord:
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

    def _fail(self, job_id: str, message: str, error_type: str) -> JobRecord:
        logger.warning("job failed", extra={"fields": {"error": message}})
        record = self._set(job_id, status=JobStatus.failed, error=message, error_type=error_type)
        self._emit(record, message)
        return record

    async def _timed(self, job_id: str, stage: str, step: "asyncio.Future | object") -> object:
        started = time.perf_counter()
        try:
            return await step  # type: ignore[misc]
        finally:
            self.stage_seconds.setdefault(job_id, {})[stage] = time.perf_counter() - started
