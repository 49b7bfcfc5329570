"""A book's state as its followers see it: status, stage, pages done, progress events and time per stage.

The pipeline's steps say what happened through here (`enter`, `say`, `fail`, `done`), so the job record and the
events its followers receive never disagree.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from typing import TypeVar

from webapp.jobs.artifacts import ArtifactStore
from webapp.jobs.events import EventBus
from webapp.jobs.models import STAGE_MESSAGES, JobEvent, JobRecord, JobStatus, Stage
from webapp.jobs.page_tally import tally_book
from webapp.jobs.progress import Steps
from webapp.jobs.store import JobStore

logger = logging.getLogger(__name__)
T = TypeVar("T")


class JobLedger:
    def __init__(self, store: JobStore, events: EventBus, artifacts: ArtifactStore) -> None:
        self.store = store
        self.events = events
        self.artifacts = artifacts

    def record(self, job_id: str) -> JobRecord:
        record = self.store.get(job_id)
        if record is None:
            raise KeyError(job_id)
        return record

    def start(self, job_id: str) -> JobRecord:
        return self.store.update(job_id, status=JobStatus.running, error=None, error_type=None)

    def enter(self, job_id: str, stage: Stage, message: str | None = None) -> JobRecord:
        """The book moves to `stage`; followers are told in plain words, and the log gets one line."""
        record = self.store.update(job_id, stage=stage)
        logger.info(message or STAGE_MESSAGES[stage], extra={"fields": {"pages": record.pages_total}})
        return self.say(record, message or STAGE_MESSAGES[stage])

    def say(self, record: JobRecord, message: str, *, page: int | None = None) -> JobRecord:
        self.events.publish(
            JobEvent(
                job_id=record.id, status=record.status, stage=record.stage, pages_done=record.pages_done,
                pages_total=record.pages_total, message=message, page=page, error=record.error,
            )
        )
        return record

    def piece_saved(self, job_id: str, page: int, message: str) -> None:
        """A page's picture, words or voice was just saved: count the ready pages again and tell followers."""
        record = self.store.get(job_id)
        if record is None:
            return  # deleted while it was being made
        ready = self._ready(record)
        self.say(self.store.update(job_id, pages_done=ready) if ready != record.pages_done else record, message, page=page)

    def _ready(self, record: JobRecord) -> int:
        """How many of the book's pages are ready (picture, words and voice), counted from what is saved."""
        return tally_book(record, self.store.progress(record.id), self.artifacts).ready

    def picture_saved(self, job_id: str, page: int) -> None:
        self.piece_saved(job_id, page, "Cover painted." if page == 0 else f"Page {page} painted.")

    def done(self, job_id: str) -> None:
        record = self.record(job_id)
        # Counted once more: a silent book's last note, or a resume that saved nothing new, changes no piece.
        record = self.store.update(job_id, status=JobStatus.done, stage=Stage.done, pages_done=self._ready(record))
        logger.info("book ready", extra={"fields": {"pages": record.pages_total}})
        self.say(record, STAGE_MESSAGES[Stage.done])

    def fail(self, job_id: str, message: str, error_type: str) -> None:
        logger.warning("job failed", extra={"fields": {"error": message}})
        if self.store.get(job_id) is None:
            return  # deleted while it was being made: nothing left to mark
        self.say(self.store.update(job_id, status=JobStatus.failed, error=message, error_type=error_type), message)

    async def timed(self, job_id: str, stage: str, step: Awaitable[T]) -> T:
        started = time.perf_counter()
        try:
            return await step
        finally:
            self.took(job_id, stage, time.perf_counter() - started)

    def took(self, job_id: str, stage: str, seconds: float) -> None:
        """Seconds spent on `stage` in this run, saved with the book (the CLI prints them; benchmarks read them)."""
        if self.store.get(job_id) is None:
            return
        times = {**self.store.progress(job_id).stage_seconds, stage: round(seconds, 3)}
        self.store.save_step(job_id, Steps.STAGE_TIMES, times)
