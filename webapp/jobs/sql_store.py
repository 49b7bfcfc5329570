"""The job store on SQLAlchemy: SQLite on one machine (the default), PostgreSQL when several web replicas and
workers share it. Each step's result is written the moment it exists (`save_step`), so any process resumes a
job from its last saved step.

`create_within` is the queue cap: the count and the insert happen in one transaction that holds the database's
write lock (SQLite) or an advisory lock (PostgreSQL), so simultaneous submissions on any number of replicas
never pass the cap together. Writes that fail because the disk is full raise `StorageFull` (507).
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Engine, delete, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

from shared.errors import StorageFull
from webapp.jobs.disk_guard import DiskGuard, is_disk_full
from webapp.jobs.models import JobRecord, JobStatus, PageReport, Stage
from webapp.jobs.progress import StoryProgress
from webapp.jobs.tables import JOB_FIELDS, REPORT_FIELDS, jobs, reports, steps

ACTIVE = (JobStatus.queued.value, JobStatus.running.value)
_CAPACITY_LOCK = zlib.crc32(b"fabula-queue-cap")
_JOB_COLUMNS = [jobs.c[field] for field in JOB_FIELDS]
T = TypeVar("T")


class SqlJobStore:
    def __init__(self, engine: Engine, *, where: str = "", guard: DiskGuard | None = None) -> None:
        self.engine = engine
        self.where = where
        self.guard = guard  # the data disk's guard when the database lives on it (SQLite)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _write(self, *, work: bool = True) -> Iterator[Connection]:
        """A write transaction. `work` writes (new books, steps) are refused while the disk is full; records of
        what happened to a book (its status, its lease) still go through, on the space the guard set free."""
        if work and self.guard is not None:
            self.guard.check()
        try:
            with self.engine.connect() as connection:
                connection.execution_options(immediate=True)
                with connection.begin():
                    yield connection
        except OperationalError as exc:
            if not is_disk_full(exc):
                raise
            if self.guard is not None:
                self.guard.filled()
            raise StorageFull.for_database(self.where) from None

    def _read(self, query: Callable[[Connection], T]) -> T:
        with self.engine.connect() as connection:
            return query(connection)

    # ---- jobs ----------------------------------------------------------------------------------------------
    def create_within(self, record: JobRecord, capacity: int) -> bool:
        """Insert `record` only while fewer than `capacity` books are queued or running; False when full."""
        with self._write() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CAPACITY_LOCK})
            active = connection.execute(select(func.count()).select_from(jobs).where(jobs.c.status.in_(ACTIVE))).scalar_one()
            if active >= capacity:
                return False
            connection.execute(insert(jobs).values(**_to_row(record)))
            return True

    def requeue_within(self, job_id: str, capacity: int, **changes: object) -> bool | None:
        """Turn a finished or failed book back to queued (an edit, a resume) in one transaction with the queue cap:
        None when it is already queued or running (another change got there first), False when the queue is full."""
        values: dict[str, Any] = {"status": JobStatus.queued.value, "updated_at": time.time(), "error": None, "error_type": None}
        values |= {key: value.value if isinstance(value, Stage) else value for key, value in changes.items()}
        with self._write() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CAPACITY_LOCK})
            status = connection.execute(select(jobs.c.status).where(jobs.c.id == job_id)).scalar_one_or_none()
            if status is None or status in ACTIVE:
                return None
            active = connection.execute(select(func.count()).select_from(jobs).where(jobs.c.status.in_(ACTIVE))).scalar_one()
            if active >= capacity:
                return False
            connection.execute(update(jobs).where(jobs.c.id == job_id).values(**values))
            return True

    def get(self, job_id: str) -> JobRecord | None:
        row = self._read(lambda c: c.execute(select(*_JOB_COLUMNS).where(jobs.c.id == job_id)).mappings().first())
        return _from_row(row) if row else None

    def update(self, job_id: str, **changes: object) -> JobRecord:
        values: dict[str, Any] = {"updated_at": time.time()}
        for key, value in changes.items():
            if key not in JOB_FIELDS or key == "id":
                raise KeyError(key)
            if isinstance(value, (JobStatus, Stage)):
                value = value.value
            elif key == "options":
                value = json.dumps(value)
            values[key] = value
        try:
            with self._write(work=False) as connection:
                connection.execute(update(jobs).where(jobs.c.id == job_id).values(**values))
        except StorageFull:
            # The guard has just set its reserve free: a book's status always gets recorded.
            with self._write(work=False) as connection:
                connection.execute(update(jobs).where(jobs.c.id == job_id).values(**values))
        record = self.get(job_id)
        if record is None:
            raise KeyError(job_id)
        return record

    def delete(self, job_id: str) -> bool:
        with self._write(work=False) as connection:
            connection.execute(delete(steps).where(steps.c.job_id == job_id))
            return connection.execute(delete(jobs).where(jobs.c.id == job_id)).rowcount > 0

    def unfinished(self) -> list[JobRecord]:
        rows = self._read(lambda c: c.execute(select(*_JOB_COLUMNS).where(jobs.c.status.in_(ACTIVE)).order_by(jobs.c.created_at)).mappings().all())
        return [_from_row(row) for row in rows]

    def count_active(self) -> int:
        return self._read(lambda c: c.execute(select(func.count()).select_from(jobs).where(jobs.c.status.in_(ACTIVE))).scalar_one())

    def find_by_token(self, token: str) -> JobRecord | None:
        row = self._read(lambda c: c.execute(select(*_JOB_COLUMNS).where(jobs.c.book_token == token)).mappings().first())
        return _from_row(row) if row else None

    # ---- leases: one worker per book at a time ------------------------------------------------------------
    def acquire_lease(self, job_id: str, owner: str, seconds: float) -> bool:
        """Hold the book for `owner` until now + `seconds`, unless another holder's lease is still running or the
        book is no longer queued or running."""
        now = time.time()
        free = (jobs.c.lease_owner.is_(None)) | (jobs.c.lease_until < now) | (jobs.c.lease_owner == owner)
        with self._write(work=False) as connection:
            # Only a book still to be made: an order redelivered after its book was finished takes nothing.
            taken = connection.execute(
                update(jobs).where(jobs.c.id == job_id, free, jobs.c.status.in_(ACTIVE)).values(lease_owner=owner, lease_until=now + seconds)
            )
            return taken.rowcount == 1

    def renew_lease(self, job_id: str, owner: str, seconds: float) -> bool:
        """Only while the book is still to be made: a book cancelled (or deleted) stops the worker making it."""
        with self._write(work=False) as connection:
            renewed = connection.execute(
                update(jobs).where(jobs.c.id == job_id, jobs.c.lease_owner == owner, jobs.c.status.in_(ACTIVE)).values(lease_until=time.time() + seconds)
            )
            return renewed.rowcount == 1

    # ---- the sweeper: books whose order was lost ------------------------------------------------------------
    def stalled(self, quiet_s: float) -> list[JobRecord]:
        """Books queued or running that nobody holds (no lease, or one that ran out) and that have not changed, nor
        been swept, for `quiet_s` seconds: their order may be lost (a broker restarted without persistence, a
        worker died)."""
        now = time.time()
        before = now - quiet_s
        unheld = jobs.c.lease_until.is_(None) | (jobs.c.lease_until < now)
        unswept = jobs.c.swept_at.is_(None) | (jobs.c.swept_at < before)
        query = select(*_JOB_COLUMNS).where(jobs.c.status.in_(ACTIVE), unheld, unswept, jobs.c.updated_at < before).order_by(jobs.c.created_at)
        return [_from_row(row) for row in self._read(lambda c: c.execute(query).mappings().all())]

    def claim_sweep(self, job_id: str, quiet_s: float) -> bool:
        """Mark the book swept now, unless it was swept within `quiet_s` or is held: one replica wins per period."""
        now = time.time()
        unheld = jobs.c.lease_until.is_(None) | (jobs.c.lease_until < now)
        unswept = jobs.c.swept_at.is_(None) | (jobs.c.swept_at < now - quiet_s)
        with self._write(work=False) as connection:
            claimed = connection.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.status.in_(ACTIVE), unheld, unswept).values(swept_at=now))
            return claimed.rowcount == 1

    def release_lease(self, job_id: str, owner: str) -> None:
        with self._write(work=False) as connection:
            connection.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.lease_owner == owner).values(lease_owner=None, lease_until=None))

    # ---- steps ---------------------------------------------------------------------------------------------
    def save_step(self, job_id: str, name: str, data: dict) -> None:
        values = {"job_id": job_id, "name": name, "data": json.dumps(data, ensure_ascii=False), "updated_at": time.time()}
        with self._write() as connection:
            dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
            statement = dialect.insert(steps).values(**values)
            changes = {"data": values["data"], "updated_at": values["updated_at"]}
            connection.execute(statement.on_conflict_do_update(index_elements=["job_id", "name"], set_=changes))

    def steps(self, job_id: str) -> dict[str, dict]:
        rows = self._read(lambda c: c.execute(select(steps.c.name, steps.c.data).where(steps.c.job_id == job_id)).all())
        return {name: json.loads(data) for name, data in rows}

    def progress(self, job_id: str) -> StoryProgress:
        return StoryProgress(self.steps(job_id))

    def delete_step(self, job_id: str, name: str) -> None:
        with self._write(work=False) as connection:
            connection.execute(delete(steps).where(steps.c.job_id == job_id, steps.c.name == name))

    # ---- reports -------------------------------------------------------------------------------------------
    def add_report(self, report: PageReport) -> None:
        with self._write(work=False) as connection:
            connection.execute(insert(reports).values(**report.model_dump()))

    def reports(self, *, limit: int = 100, job_id: str | None = None) -> list[PageReport]:
        """The newest reports first (they outlive a deleted story: whoever runs the server keeps them)."""
        query = select(reports).order_by(reports.c.created_at.desc()).limit(limit)
        if job_id is not None:
            query = query.where(reports.c.job_id == job_id)
        rows = self._read(lambda c: c.execute(query).mappings().all())
        return [PageReport.model_validate({field: row[field] for field in REPORT_FIELDS}) for row in rows]


def _to_row(record: JobRecord) -> dict[str, Any]:
    row = record.model_dump()
    row["status"] = record.status.value
    row["stage"] = record.stage.value
    row["options"] = json.dumps(record.options)
    return row


def _from_row(row: Any) -> JobRecord:
    data = {field: row[field] for field in JOB_FIELDS}
    data["options"] = json.loads(data["options"])
    return JobRecord.model_validate(data)

