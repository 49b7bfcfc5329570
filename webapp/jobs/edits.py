"""Changing a finished book without redoing the rest: a page's picture, a page's text, more pages.

Each edit's request side (`EditRequests`, called through `Stories` by the REST API, the UI and the CLI) checks that
the edit makes sense, turns the job to queued in one transaction with the queue cap (so two changes at once cannot
both pass) and records what is asked in the job's steps; its work side (`StoryPipeline.repaint`, `.rewrite`,
`.extend`, run from a `WorkOrder`) does the change and rebinds the book. The work side reads what was asked from
the steps, so running an order twice (a redelivered task) changes the book once.
"""

from __future__ import annotations

import logging

from shared.errors import Conflict, NotFound, RateLimited
from webapp.jobs.models import JobRecord, JobStatus, Stage
from webapp.jobs.orders import WorkOrder
from webapp.jobs.progress import RewriteRequest, Steps
from webapp.jobs.store import JobStore
from webapp.story.plan import StoryPlan

logger = logging.getLogger(__name__)


class EditRequests:
    """The request side: validate, record, and say which order to schedule."""

    def __init__(self, store: JobStore, *, max_book_pages: int, max_queued_jobs: int) -> None:
        self.store = store
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
        self.store.save_step(job_id, Steps.rewrites(page), RewriteRequest(count=count, instruction=instruction).model_dump())
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
