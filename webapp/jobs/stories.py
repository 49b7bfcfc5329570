"""The stories a reader makes and changes: what the REST API, the studio page and the CLI call.

This is the request side of every workflow: it validates, records what is asked and hands a `WorkOrder` to the
scheduler; the pipeline does the work, in this process or in a worker. The queue cap is checked in the same
transaction that creates the job, so it holds across any number of web replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import secrets
import time
import uuid
from pathlib import Path

from shared.blocked_words import refuse_blocked, remove_blocked
from shared.errors import Conflict, NotFound, RateLimited
from shared.http_errors import BROKER, ServiceUnavailable
from shared.images import load_image
from shared.photo_safety import refuse_unsafe_photo
from shared.settings import Settings
from webapp.jobs.artifacts import ArtifactStore
from webapp.jobs.edits import EditRequests
from webapp.jobs.events import EventBus
from webapp.jobs.models import JobEvent, JobRecord, JobStatus, PageReport, Stage
from webapp.jobs.orders import WorkOrder
from webapp.jobs.progress import Artifacts, Steps, StoryProgress
from webapp.jobs.safety_metrics import SAFETY
from webapp.jobs.schedulers import Scheduler
from webapp.jobs.store import JobStore
from webapp.story.options import StoryOptions

logger = logging.getLogger(__name__)
CANCELLED = "Stopped at your request; its finished pages are kept, and Resume goes on from there."

_POLL_S = 2.0


def normalised_photo(data: bytes, settings: Settings, param: str = "photo") -> bytes:
    """Validate an upload with the services' rules and the image safety check, and store it upright, RGB, as JPEG."""
    image = load_image(data, max_bytes=settings.max_upload_bytes, max_pixels=settings.max_image_pixels, param=param)
    refuse_unsafe_photo(image, settings, param=param)
    image.thumbnail((2048, 2048))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def normalised_logo(data: bytes, settings: Settings) -> bytes:
    image = load_image(data, max_bytes=settings.max_upload_bytes, max_pixels=settings.max_image_pixels, param="logo")
    refuse_unsafe_photo(image, settings, param="logo")
    image.thumbnail((1024, 1024))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class Stories:
    def __init__(self, *, store: JobStore, artifacts: ArtifactStore, events: EventBus, scheduler: Scheduler, settings: Settings) -> None:
        self.store = store
        self.artifacts = artifacts
        self.events = events
        self.scheduler = scheduler
        self.settings = settings
        self.edits = EditRequests(store, max_book_pages=settings.max_book_pages, max_queued_jobs=settings.max_queued_jobs)

    # ---- making a book -------------------------------------------------------------------------------------
    async def submit_upload(self, photo: bytes, options: StoryOptions, *, logo: bytes | None = None, client: str | None = None) -> JobRecord:
        """`submit` for servers: the photo is decoded and re-encoded off the event loop."""
        self._refuse_when_full()
        photo_jpeg = await asyncio.to_thread(normalised_photo, photo, self.settings)
        logo_png = await asyncio.to_thread(normalised_logo, logo, self.settings) if logo else None
        return self._create(photo_jpeg, options, logo_png=logo_png, client=client, parent_id=None)

    def submit(self, photo: bytes, options: StoryOptions, *, logo: bytes | None = None, client: str | None = None, parent_id: str | None = None) -> JobRecord:
        self._refuse_when_full()
        photo_jpeg = normalised_photo(photo, self.settings)
        logo_png = normalised_logo(logo, self.settings) if logo else None
        return self._create(photo_jpeg, options, logo_png=logo_png, client=client, parent_id=parent_id)

    def _busy(self) -> RateLimited:
        return RateLimited(
            f"Fabula is busy: {self.settings.max_queued_jobs} books are already queued (FABULA_MAX_QUEUED_JOBS). Try again in a minute.",
            retry_after=30,
        )

    def _refuse_when_full(self) -> None:
        """A quick early answer before the photo is decoded; the cap itself is held by `create_within`."""
        if self.store.count_active() >= self.settings.max_queued_jobs:
            raise self._busy()

    def _create(self, photo_jpeg: bytes, options: StoryOptions, *, logo_png: bytes | None, client: str | None, parent_id: str | None) -> JobRecord:
        now = time.time()
        ttl = self.settings.book_link_ttl_hours
        record = JobRecord(
            id=uuid.uuid4().hex, status=JobStatus.queued, stage=Stage.queued, options=options.model_dump(mode="json"),
            created_at=now, updated_at=now, pages_total=options.pages, book_token=secrets.token_urlsafe(32),
            book_expires_at=now + ttl * 3600 if ttl else None, parent_id=parent_id, client=client,
        )
        try:
            self.artifacts.write(record.id, Artifacts.PHOTO, photo_jpeg, new_job=True)
            if logo_png:
                self.artifacts.write(record.id, Artifacts.LOGO, logo_png)
            if not self.store.create_within(record, self.settings.max_queued_jobs):
                raise self._busy()
        except BaseException:
            self.artifacts.delete_job(record.id)
            raise
        if not self._schedule(WorkOrder(job_id=record.id)):
            # Nothing is kept, so the caller's retry makes one book, not two.
            self.store.delete(record.id)
            self.artifacts.delete_job(record.id)
            raise ServiceUnavailable.of(BROKER)
        return record

    def _schedule(self, order: WorkOrder) -> bool:
        """Hand the order to the scheduler; False when the book queue (the broker) cannot be reached. The order is
        saved first and the book stays queued, so the sweeper sends it once the broker is back."""
        self.store.save_step(order.job_id, Steps.ORDER, order.model_dump(mode="json"))
        try:
            self.scheduler.schedule(order)
        except Exception:  # noqa: BLE001 - any failure to publish: the broker is away
            logger.warning("the book queue (FABULA_BROKER_URL) cannot be reached; the order is sent once it is back", exc_info=True)
            return False
        return True

    # ---- reading and following -----------------------------------------------------------------------------
    def get(self, job_id: str) -> JobRecord:
        record = self.store.get(job_id)
        if record is None:
            raise NotFound(f"There is no story with id {job_id!r}.", param="id")
        return record

    def progress(self, job_id: str) -> StoryProgress:
        """Everything saved so far for the story, as typed values."""
        return self.store.progress(job_id)

    def find_by_token(self, token: str) -> JobRecord | None:
        """The story behind a public book link, unless its link has expired."""
        record = self.store.find_by_token(token)
        if record is None or (record.book_expires_at is not None and record.book_expires_at < time.time()):
            return None
        return record

    def file(self, job_id: str, name: str) -> Path | None:
        """One of the story's files (its photo, a picture, page audio, a format of the book), when it exists."""
        path = self.artifacts.path(job_id, name)
        return path if path.is_file() else None

    async def wait(self, job_id: str) -> JobRecord:
        """Until the story is done or failed (made here or by a worker anywhere)."""
        await self.scheduler.wait(job_id)
        queue = self.events.subscribe(job_id)
        try:
            while (record := self.get(job_id)).status in (JobStatus.queued, JobStatus.running):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(queue.get(), timeout=_POLL_S)
            return record
        finally:
            self.events.unsubscribe(job_id, queue)

    # ---- resuming and deleting -----------------------------------------------------------------------------
    def resume(self, job_id: str) -> JobRecord:
        record = self.get(job_id)
        if record.status == JobStatus.failed and self.store.requeue_within(job_id, self.settings.max_queued_jobs) is False:
            raise self._busy()
        if record.status == JobStatus.failed:
            self._schedule(self._pending(job_id))
        return self.get(job_id)

    def resume_unfinished(self) -> list[str]:
        """On one machine: run again what a previous process left queued or running (workers redeliver themselves)."""
        if not self.scheduler.local:
            return []
        resumed = [record.id for record in self.store.unfinished()]
        for job_id in resumed:
            logger.info("resuming job", extra={"fields": {"job_id": job_id}})
            self.scheduler.schedule(self._pending(job_id))
        return resumed

    def _pending(self, job_id: str) -> WorkOrder:
        saved = self.store.progress(job_id).order
        return WorkOrder.model_validate(saved) if saved else WorkOrder(job_id=job_id)

    async def cancel(self, job_id: str) -> JobRecord:
        """Stop a book being made; what is finished is kept and `resume` goes on from there. In this process its
        task is cancelled at once; a worker elsewhere stops at its next lease renewal (a third of a lease)."""
        record = self.get(job_id)
        if record.status not in (JobStatus.queued, JobStatus.running):
            raise Conflict("This story is not being made, so there is nothing to stop.", param="id")
        record = self.store.update(job_id, status=JobStatus.failed, error=CANCELLED, error_type="cancelled")
        await self.scheduler.cancel(job_id)
        self.events.publish(
            JobEvent(
                job_id=job_id, status=record.status, stage=record.stage, pages_done=record.pages_done, pages_total=record.pages_total,
                message=CANCELLED, error=CANCELLED,
            )
        )
        return record

    async def delete(self, job_id: str) -> None:
        self.get(job_id)
        await self.scheduler.cancel(job_id)
        self.store.delete(job_id)
        self.artifacts.delete_job(job_id)
        self.events.forget(job_id)

    async def shutdown(self) -> None:
        await self.scheduler.shutdown()

    # ---- changing a finished book --------------------------------------------------------------------------
    def regenerate_image(self, job_id: str, page: int) -> JobRecord:
        self._schedule(self.edits.repaint(job_id, page))
        return self.get(job_id)

    def rewrite_text(self, job_id: str, page: int, instruction: str | None = None) -> JobRecord:
        refuse_blocked(instruction, "instruction", tuple(self.settings.blocked_words))
        self._schedule(self.edits.rewrite(job_id, page, instruction))
        return self.get(job_id)

    def add_pages(self, job_id: str, more: int) -> JobRecord:
        self._schedule(self.edits.extend(job_id, more))
        return self.get(job_id)

    def report_page(self, job_id: str, page: int, what: str, reason: str, *, client: str | None = None) -> tuple[JobRecord, PageReport]:
        """Keep a reader's report, then paint the page's picture again or rewrite its text so it is fit for a child.

        The report is kept even when the book is still being made (then nothing is redone and a Conflict says so).
        """
        record = self.get(job_id)
        plan = self.store.progress(job_id).plan
        if plan is not None and not 0 <= page <= len(plan.pages):
            raise NotFound(f"Page {page} does not exist; this story has pages 1–{len(plan.pages)} (0 is the cover).", param="page")
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

    def reports(self, *, limit: int = 100, job_id: str | None = None) -> list[PageReport]:
        """Readers' reports, newest first (of one story, or of all)."""
        return self.store.reports(limit=limit, job_id=job_id)

    def new_version(self, job_id: str, options: StoryOptions | None = None) -> JobRecord:
        record = self.get(job_id)
        chosen = options or StoryOptions.model_validate({**record.options, "seed": None})
        logo = self.artifacts.read(job_id, Artifacts.LOGO) if self.artifacts.exists(job_id, Artifacts.LOGO) else None
        # The stored photo and logo were checked and normalised when they were uploaded: they are taken as they are.
        self._refuse_when_full()
        version = self._create(self.artifacts.read(job_id, Artifacts.PHOTO), chosen, logo_png=logo, client=record.client, parent_id=job_id)
        caption = self.store.progress(job_id).caption_step
        if caption:
            self.store.save_step(version.id, Steps.CAPTION, caption)
        return version
