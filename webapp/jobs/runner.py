"""The in-process job runner: accepts books, runs them as background tasks, resumes unfinished ones at start,
and applies page edits (new picture, rewritten text, more pages, another version) without redoing the rest."""

from __future__ import annotations

import asyncio
import io
import logging
import secrets
import time
import uuid

from shared.blocked_words import refuse_blocked, remove_blocked
from shared.errors import Conflict, NotFound, RateLimited
from shared.images import load_image
from shared.settings import Settings
from webapp.jobs.models import JobRecord, JobStatus, PageReport, Stage
from webapp.jobs.pipeline import StoryPipeline, image_name
from webapp.jobs.safety_metrics import SAFETY
from webapp.story.options import StoryOptions
from webapp.story.plan import StoryPlan, Translation

logger = logging.getLogger(__name__)


def normalised_photo(data: bytes, settings: Settings, param: str = "photo") -> bytes:
    """Validate an upload with the services' rules and store it upright, RGB, as JPEG."""
    image = load_image(data, max_bytes=settings.max_upload_bytes, max_pixels=settings.max_image_pixels, param=param)
    image.thumbnail((2048, 2048))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def normalised_logo(data: bytes, settings: Settings) -> bytes:
    image = load_image(data, max_bytes=settings.max_upload_bytes, max_pixels=settings.max_image_pixels, param="logo")
    image.thumbnail((1024, 1024))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class JobRunner:
    def __init__(self, pipeline: StoryPipeline, settings: Settings, *, max_running: int = 2) -> None:
        self.pipeline = pipeline
        self.store = pipeline.store
        self.artifacts = pipeline.artifacts
        self.events = pipeline.events
        self.settings = settings
        self._tasks: dict[str, asyncio.Task] = {}
        self._running = asyncio.Semaphore(max_running)

    # ---- creating and running ------------------------------------------------------------------------------
    async def submit_upload(self, photo: bytes, options: StoryOptions, *, logo: bytes | None = None, client: str | None = None) -> JobRecord:
        """`submit` for servers: the photo is decoded and re-encoded off the event loop."""
        self._check_capacity()
        photo_jpeg = await asyncio.to_thread(normalised_photo, photo, self.settings)
        logo_png = await asyncio.to_thread(normalised_logo, logo, self.settings) if logo else None
        return self._create(photo_jpeg, options, logo_png=logo_png, client=client, parent_id=None)

    def submit(self, photo: bytes, options: StoryOptions, *, logo: bytes | None = None, client: str | None = None, parent_id: str | None = None) -> JobRecord:
        self._check_capacity()
        photo_jpeg = normalised_photo(photo, self.settings)
        logo_png = normalised_logo(logo, self.settings) if logo else None
        return self._create(photo_jpeg, options, logo_png=logo_png, client=client, parent_id=parent_id)

    def _check_capacity(self) -> None:
        if self.store.count_active() >= self.settings.max_queued_jobs:
            raise RateLimited(
                f"Fabula is busy: {self.settings.max_queued_jobs} books are already queued (FABULA_MAX_QUEUED_JOBS). Try again in a minute.",
                retry_after=30,
            )

    def _create(self, photo_jpeg: bytes, options: StoryOptions, *, logo_png: bytes | None, client: str | None, parent_id: str | None) -> JobRecord:
        now = time.time()
        ttl = self.settings.book_link_ttl_hours
        record = JobRecord(
            id=uuid.uuid4().hex, status=JobStatus.queued, stage=Stage.queued, options=options.model_dump(mode="json"),
            created_at=now, updated_at=now, pages_total=options.pages, book_token=secrets.token_urlsafe(32),
            book_expires_at=now + ttl * 3600 if ttl else None, parent_id=parent_id, client=client,
        )
        self.artifacts.write(record.id, "photo.jpg", photo_jpeg)
        if logo_png:
            self.artifacts.write(record.id, "logo.png", logo_png)
        self.store.create(record)
        self.start(record.id)
        return record

    def start(self, job_id: str, work: "object | None" = None) -> asyncio.Task:
        async def guarded() -> None:
            async with self._running:
                await (work if work is not None else self.pipeline.run(job_id))  # type: ignore[misc]

        task = asyncio.get_running_loop().create_task(guarded(), name=f"job-{job_id}")
        self._tasks[job_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job_id, None) if self._tasks.get(job_id) is task else None)
        return task

    def resume_unfinished(self) -> list[str]:
        resumed = [record.id for record in self.store.unfinished() if record.id not in self._tasks]
        for job_id in resumed:
            logger.info("resuming job", extra={"fields": {"job_id": job_id}})
            self.start(job_id)
        return resumed

    async def wait(self, job_id: str) -> JobRecord:
        task = self._tasks.get(job_id)
        if task is not None:
            await asyncio.shield(task)
        return self.get(job_id)

    def get(self, job_id: str) -> JobRecord:
        record = self.store.get(job_id)
        if record is None:
            raise NotFound(f"There is no story with id {job_id!r}.", param="id")
        return record

    def resume(self, job_id: str) -> JobRecord:
        record = self.get(job_id)
        if job_id not in self._tasks and record.status != JobStatus.done:
            self.store.update(job_id, status=JobStatus.queued, error=None, error_type=None)
            self.start(job_id)
        return self.get(job_id)

    async def delete(self, job_id: str) -> None:
        self.get(job_id)
        task = self._tasks.pop(job_id, None)
        if task is not None:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - the job is going away either way
                pass
        self.store.delete(job_id)
        self.artifacts.delete_job(job_id)
        self.events.forget(job_id)

    async def shutdown(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ---- editing a finished book ---------------------------------------------------------------------------
    def _editable(self, job_id: str, page: int | None = None) -> tuple[JobRecord, StoryPlan]:
        record = self.get(job_id)
        if job_id in self._tasks:
            raise Conflict("This story is still being made; wait until it is finished, then edit it.", param="id")
        steps = self.store.steps(job_id)
        if "plan" not in steps:
            raise Conflict("This story has no pages yet to edit.", param="id")
        plan = StoryPlan.model_validate(steps["plan"])
        if page is not None and not 0 <= page <= len(plan.pages):
            raise NotFound(f"Page {page} does not exist; this story has pages 1–{len(plan.pages)} (0 is the cover).", param="page")
        return record, plan

    def regenerate_image(self, job_id: str, page: int) -> JobRecord:
        record, plan = self._editable(job_id, page)
        redo = self.store.steps(job_id).get(f"redo:{page}", {}).get("count", 0) + 1
        self.store.save_step(job_id, f"redo:{page}", {"count": redo})
        options = StoryOptions.model_validate(record.options)

        async def work() -> None:
            await self._edit(job_id, self._repaint(job_id, plan, options, page))

        self.artifacts.path(job_id, image_name(page)).unlink(missing_ok=True)
        self.store.update(job_id, status=JobStatus.running, stage=Stage.illustrate)
        self.start(job_id, work())
        return self.get(job_id)

    async def _repaint(self, job_id: str, plan: StoryPlan, options: StoryOptions, page: int) -> None:
        await self.pipeline.illustrate(job_id, plan, options, pages=[page])

    def rewrite_text(self, job_id: str, page: int, instruction: str | None = None) -> JobRecord:
        refuse_blocked(instruction, "instruction", tuple(self.settings.blocked_words))
        record, plan = self._editable(job_id, page)
        if page == 0:
            raise NotFound("The cover has no text to rewrite; choose a page from 1.", param="page")
        options = StoryOptions.model_validate(record.options)

        async def rewrite() -> None:
            caption = self.store.steps(job_id).get("caption", {}).get("caption", "")
            redo = self.store.steps(job_id).get(f"rewrite:{page}", {}).get("count", 0) + 1
            self.store.save_step(job_id, f"rewrite:{page}", {"count": redo})
            written = await self.pipeline.writer.rewrite_page(plan, options, caption, page, instruction, seed=self.pipeline.book_seed(job_id, options) + redo)
            plan.pages[page - 1].text = written.text
            self.store.save_step(job_id, "plan", plan.model_dump())
            translation = Translation.model_validate(self.store.steps(job_id)["translation"])
            translated = await self.pipeline.writer.translate(written.text, options.language, [c.name for c in plan.characters], seed=redo)
            translation.pages[page - 1] = translated.text
            self.store.save_step(job_id, "translation", translation.model_dump())

        self.store.update(job_id, status=JobStatus.running, stage=Stage.plan)
        self.start(job_id, self._edit(job_id, rewrite()))
        return self.get(job_id)

    def report_page(self, job_id: str, page: int, what: str, reason: str, *, client: str | None = None) -> tuple[JobRecord, PageReport]:
        """Keep a reader's report, then paint the page's picture again or rewrite its text so it is fit for a child.

        The report is kept even when the book is still being made (then nothing is redone and a Conflict says so).
        """
        record = self.get(job_id)
        report = PageReport(
            id=uuid.uuid4().hex, job_id=job_id, page=page, what=what, reason=reason.strip(), action="kept", client=client, created_at=time.time(),
        )
        try:
            if what == "text":
                said = remove_blocked(reason.strip()[:200], tuple(self.settings.blocked_words))
                instruction = f"A reader reported this page ({said}). Write it again so it is gentle and right for a young child."
                record = self.rewrite_text(job_id, page, instruction)
                report = report.model_copy(update={"action": "rewritten"})
            else:
                record = self.regenerate_image(job_id, page)
                report = report.model_copy(update={"action": "repainted"})
        finally:
            self.store.add_report(report)
            SAFETY.reported.labels(action=report.action).inc()
            logger.warning("page reported", extra={"fields": {"job_id": job_id, "page": page, "what": what, "action": report.action}})
        return record, report

    def add_pages(self, job_id: str, more: int) -> JobRecord:
        record, plan = self._editable(job_id)
        if not 1 <= more <= self.settings.max_book_pages - len(plan.pages):
            raise Conflict(
                f"A book has at most {self.settings.max_book_pages} pages; this one has {len(plan.pages)}, so add 1–{max(0, self.settings.max_book_pages - len(plan.pages))}.",
                param="pages",
            )
        options = StoryOptions.model_validate(record.options)

        async def extend() -> None:
            caption = self.store.steps(job_id).get("caption", {}).get("caption", "")
            new_pages = await self.pipeline.writer.continue_story(plan, options, caption, more, seed=self.pipeline.book_seed(job_id, options) + len(plan.pages))
            first_new = len(plan.pages) + 1
            plan.pages.extend(new_pages)
            self.store.save_step(job_id, "plan", plan.model_dump())
            self.store.update(job_id, pages_total=len(plan.pages), options={**record.options, "pages": len(plan.pages)})
            translation = Translation.model_validate(self.store.steps(job_id)["translation"])

            async def translate_new() -> None:
                texts = [page.text for page in new_pages]
                if options.language != "en":
                    texts = await self.pipeline.writer.translate_texts(texts, options.language, [c.name for c in plan.characters])
                translation.pages.extend(texts)
                self.store.save_step(job_id, "translation", translation.model_dump())

            await asyncio.gather(translate_new(), self.pipeline.illustrate(job_id, plan, options, pages=list(range(first_new, len(plan.pages) + 1))))

        self.store.update(job_id, status=JobStatus.running, stage=Stage.plan)
        self.start(job_id, self._edit(job_id, extend()))
        return self.get(job_id)

    def new_version(self, job_id: str, options: StoryOptions | None = None) -> JobRecord:
        record = self.get(job_id)
        chosen = options or StoryOptions.model_validate({**record.options, "seed": None})
        logo = self.artifacts.read(job_id, "logo.png") if self.artifacts.exists(job_id, "logo.png") else None
        version = self.submit(self.artifacts.read(job_id, "photo.jpg"), chosen, logo=logo, client=record.client, parent_id=job_id)
        caption = self.store.steps(job_id).get("caption")
        if caption:
            self.store.save_step(version.id, "caption", caption)
        return version

    async def _edit(self, job_id: str, change: "object") -> None:
        """Run an edit, then rebind the book; failures are reported on the job, the saved book stays."""
        from shared.errors import FabulaError

        try:
            await change  # type: ignore[misc]
            await self.pipeline.build_book(job_id)
        except FabulaError as exc:
            self.pipeline._fail(job_id, exc.message, exc.error_type)
            return
        except Exception as exc:  # noqa: BLE001
            logger.exception("edit failed")
            self.pipeline._fail(job_id, f"The change could not be made ({type(exc).__name__}).", "internal_error")
            return
        record = self.store.update(job_id, status=JobStatus.done, stage=Stage.done)
        self.pipeline._emit(record, "Your book is ready.")
