"""Changing a finished book without redoing the rest: a page's picture, a page's text, more pages.

Each edit's request side (`EditRequests`, called by the REST API, the UI and the CLI) checks that the edit makes
sense, turns the job to queued in one transaction with the queue cap (so two changes at once cannot both pass) and
records what is asked in the job's steps; its work side (`BookEdits`, run
by the pipeline from a `WorkOrder`) does the change and rebinds the book. The work side reads what was asked from
the steps, so running an order twice (a redelivered task) changes the book once.
"""

from __future__ import annotations

import asyncio

import logging
from typing import TYPE_CHECKING

from shared.errors import Conflict, NotFound, RateLimited
from webapp.jobs.models import JobRecord, JobStatus, Stage
from webapp.jobs.orders import WorkOrder
from webapp.jobs.progress import Artifacts, Steps
from webapp.jobs.store import JobStore
from webapp.story.options import StoryOptions
from webapp.story.plan import StoryPlan

if TYPE_CHECKING:
    from webapp.jobs.pipeline import StoryPipeline

logger = logging.getLogger(__name__)


class EditRequests:
    """The request side: validate, record, and say which order to schedule."""

    def __init__(self, store: JobStore, artifacts, *, max_book_pages: int, max_queued_jobs: int) -> None:  # type: ignore[no-untyped-def]
        self.store = store
        self.artifacts = artifacts
        self.max_book_pages = max_book_pages
        self.max_queued_jobs = max_queued_jobs

    def editable(self, job_id: str, page: int | None = None) -> tuple[JobRecord, StoryPlan]:
        record = self.store.get(job_id)
        if record is None:
            raise NotFound(f"There is no story with id {job_id!r}.", param="id")
        if record.status in (JobStatus.queued, JobStatus.running):
            raise being_made()
        plan = self.store.progress(job_id).plan
        if plan is None:
            raise Conflict("This story has no pages yet to edit.", param="id")
        if page is not None and not 0 <= page <= len(plan.pages):
            raise NotFound(f"Page {page} does not exist; this story has pages 1–{len(plan.pages)} (0 is the cover).", param="page")
        return record, plan

    def claim(self, job_id: str, stage: Stage) -> None:
        """Turn the book to queued, atomically: two changes at once cannot both pass, and the queue cap holds."""
        claimed = self.store.requeue_within(job_id, self.max_queued_jobs, stage=stage)
        if claimed is None:
            raise being_made()
        if claimed is False:
            raise RateLimited(
                f"Fabula is busy: {self.max_queued_jobs} books are already queued (FABULA_MAX_QUEUED_JOBS). Try again in a minute.", retry_after=30
            )

    def repaint(self, job_id: str, page: int) -> WorkOrder:
        self.editable(job_id, page)
        self.claim(job_id, Stage.illustrate)
        self.store.save_step(job_id, Steps.repaints(page), {"count": self.store.progress(job_id).repaints(page) + 1})
        return WorkOrder(job_id=job_id, kind="repaint", page=page)

    def rewrite(self, job_id: str, page: int, instruction: str | None) -> WorkOrder:
        self.editable(job_id, page)
        if page == 0:
            raise NotFound("The cover has no text to rewrite; choose a page from 1.", param="page")
        self.claim(job_id, Stage.plan)
        count = self.store.progress(job_id).rewrites(page) + 1
        self.store.save_step(job_id, Steps.rewrites(page), {"count": count, "instruction": instruction, "done": False})
        return WorkOrder(job_id=job_id, kind="rewrite", page=page, instruction=instruction)

    def extend(self, job_id: str, more: int) -> WorkOrder:
        _, plan = self.editable(job_id)
        room = self.max_book_pages - len(plan.pages)
        if not 1 <= more <= room:
            raise Conflict(
                f"A book has at most {self.max_book_pages} pages; this one has {len(plan.pages)}, so add 1–{max(0, room)}.", param="pages"
            )
        self.claim(job_id, Stage.plan)
        return WorkOrder(job_id=job_id, kind="extend", count=len(plan.pages) + more)


def being_made() -> Conflict:
    return Conflict("This story is still being made; wait until it is finished, then edit it.", param="id")


class BookEdits:
    """The work side, run by the pipeline: each changes what was asked, then the pipeline rebinds the book."""

    def __init__(self, pipeline: StoryPipeline) -> None:
        self.pipeline = pipeline
        self.store = pipeline.store

    async def repaint(self, order: WorkOrder) -> None:
        progress = self.store.progress(order.job_id)
        options = StoryOptions.model_validate(self.pipeline.record(order.job_id).options)
        if progress.plan is not None and order.page is not None:
            self.pipeline.artifacts.path(order.job_id, Artifacts.picture(order.page)).unlink(missing_ok=True)
            await self.pipeline.illustrate(order.job_id, progress.plan, options, pages=[order.page])

    async def rewrite(self, order: WorkOrder) -> None:
        job_id, page = order.job_id, order.page or 1
        progress = self.store.progress(job_id)
        asked = progress.steps.get(Steps.rewrites(page)) or {}
        plan, translation = progress.plan, progress.translation
        if asked.get("done") or plan is None or translation is None:
            return
        options = StoryOptions.model_validate(self.pipeline.record(job_id).options)
        count = int(asked.get("count", 1))
        writer = self.pipeline.writer
        written = await writer.rewrite_page(plan, options, progress.caption or "", page, order.instruction, seed=self.pipeline.book_seed(job_id, options) + count)
        plan.pages[page - 1].text = written.text
        language = self.pipeline.language_of(job_id, options)
        translated = await writer.translate(written.text, language, [character.name for character in plan.characters], seed=count)
        if translated.fallback:
            self.pipeline.write_in_english(job_id, language)  # one language per book: the whole book turns English
        translation.pages[page - 1] = translated.text
        self.store.save_step(job_id, Steps.PLAN, plan.model_dump())
        self.store.save_step(job_id, Steps.TRANSLATION, translation.model_dump())
        self.store.save_step(job_id, Steps.rewrites(page), {**asked, "done": True})

    async def extend(self, order: WorkOrder) -> None:
        job_id = order.job_id
        progress = self.store.progress(job_id)
        plan, translation = progress.plan, progress.translation
        if plan is None or translation is None:
            return
        record = self.pipeline.record(job_id)
        options = StoryOptions.model_validate(record.options)
        wanted = order.count or len(plan.pages)
        if len(plan.pages) < wanted:
            more = wanted - len(plan.pages)
            new_pages = await self.pipeline.writer.continue_story(plan, options, progress.caption or "", more, seed=self.pipeline.book_seed(job_id, options) + len(plan.pages))
            texts = [page.text for page in new_pages]
            language = self.pipeline.language_of(job_id, options)
            if language != "en":
                names = [character.name for character in plan.characters]
                written = await asyncio.gather(*(self.pipeline.writer.translate(text, language, names, seed=index) for index, text in enumerate(texts)))
                if any(piece.fallback for piece in written):
                    self.pipeline.write_in_english(job_id, language)
                texts = [piece.text for piece in written]
            translation.pages = translation.pages[: len(plan.pages)] + texts  # a run cut short between the two saves added none
            plan.pages.extend(new_pages)
            self.store.save_step(job_id, Steps.PLAN, plan.model_dump())
            self.store.save_step(job_id, Steps.TRANSLATION, translation.model_dump())
            self.store.update(job_id, pages_total=len(plan.pages), options={**record.options, "pages": len(plan.pages)})
        await self.pipeline.illustrate(job_id, plan, options, pages=[page for page in range(1, len(plan.pages) + 1)])

    async def perform(self, order: WorkOrder) -> None:
        await {"repaint": self.repaint, "rewrite": self.rewrite, "extend": self.extend}[order.kind](order)

