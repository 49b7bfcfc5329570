"""The job store: an interface, and the SQLite implementation that is the default on one machine.

Each step's result is written the moment it exists (`save_step`), so a restarted process resumes a job from
its last saved step. A server database can replace SQLite by implementing `JobStore`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Protocol

from webapp.jobs.models import JobRecord, JobStatus, PageReport, Stage

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    stage TEXT NOT NULL,
    options TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    pages_total INTEGER NOT NULL,
    pages_done INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    error_type TEXT,
    book_token TEXT UNIQUE,
    book_expires_at REAL,
    book_version INTEGER NOT NULL DEFAULT 0,
    parent_id TEXT,
    client TEXT
);
CREATE TABLE IF NOT EXISTS steps (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    data TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (job_id, name)
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status);
CREATE TABLE IF NOT EXISTS reports (
    id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    page INTEGER NOT NULL,
    what TEXT NOT NULL,
    reason TEXT NOT NULL,
    action TEXT NOT NULL,
    client TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS reports_created ON reports(created_at);
"""

_REPORT_FIELDS = ["id", "job_id", "page", "what", "reason", "action", "client", "created_at"]

_FIELDS = [
    "id", "status", "stage", "options", "created_at", "updated_at", "pages_total", "pages_done", "error",
    "error_type", "book_token", "book_expires_at", "book_version", "parent_id", "client",
]


class JobStore(Protocol):
    def create(self, record: JobRecord) -> None: ...
    def get(self, job_id: str) -> JobRecord | None: ...
    def update(self, job_id: str, **changes: object) -> JobRecord: ...
    def delete(self, job_id: str) -> bool: ...
    def unfinished(self) -> list[JobRecord]: ...
    def count_active(self) -> int: ...
    def find_by_token(self, token: str) -> JobRecord | None: ...
    def save_step(self, job_id: str, name: str, data: dict) -> None: ...
    def steps(self, job_id: str) -> dict[str, dict]: ...
    def delete_step(self, job_id: str, name: str) -> None: ...
    def add_report(self, report: PageReport) -> None: ...
    def reports(self, *, limit: int = 100, job_id: str | None = None) -> list[PageReport]: ...


class SqliteJobStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def create(self, record: JobRecord) -> None:
        row = self._to_row(record)
        with self._lock:
            self._db.execute(f"INSERT INTO jobs ({', '.join(_FIELDS)}) VALUES ({', '.join('?' for _ in _FIELDS)})", [row[f] for f in _FIELDS])

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            row = self._db.execute(f"SELECT {', '.join(_FIELDS)} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return self._from_row(row) if row else None

    def update(self, job_id: str, **changes: object) -> JobRecord:
        changes["updated_at"] = time.time()
        columns = []
        values: list[object] = []
        for key, value in changes.items():
            if key not in _FIELDS or key == "id":
                raise KeyError(key)
            columns.append(f"{key} = ?")
            if isinstance(value, (JobStatus, Stage)):
                value = value.value
            elif key == "options":
                value = json.dumps(value)
            values.append(value)
        with self._lock:
            self._db.execute(f"UPDATE jobs SET {', '.join(columns)} WHERE id = ?", [*values, job_id])
        record = self.get(job_id)
        if record is None:
            raise KeyError(job_id)
        return record

    def delete(self, job_id: str) -> bool:
        with self._lock:
            self._db.execute("DELETE FROM steps WHERE job_id = ?", (job_id,))
            cursor = self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        return cursor.rowcount > 0

    def unfinished(self) -> list[JobRecord]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join(_FIELDS)} FROM jobs WHERE status IN ('queued', 'running') ORDER BY created_at"
            ).fetchall()
        return [self._from_row(row) for row in rows]

    def count_active(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running')").fetchone()[0]

    def find_by_token(self, token: str) -> JobRecord | None:
        with self._lock:
            row = self._db.execute(f"SELECT {', '.join(_FIELDS)} FROM jobs WHERE book_token = ?", (token,)).fetchone()
        return self._from_row(row) if row else None

    def save_step(self, job_id: str, name: str, data: dict) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO steps (job_id, name, data, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(job_id, name) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at",
                (job_id, name, json.dumps(data, ensure_ascii=False), time.time()),
            )

    def steps(self, job_id: str) -> dict[str, dict]:
        with self._lock:
            rows = self._db.execute("SELECT name, data FROM steps WHERE job_id = ?", (job_id,)).fetchall()
        return {name: json.loads(data) for name, data in rows}

    def delete_step(self, job_id: str, name: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM steps WHERE job_id = ? AND name = ?", (job_id, name))

    def add_report(self, report: PageReport) -> None:
        row = report.model_dump()
        with self._lock:
            self._db.execute(f"INSERT INTO reports ({', '.join(_REPORT_FIELDS)}) VALUES ({', '.join('?' for _ in _REPORT_FIELDS)})", [row[f] for f in _REPORT_FIELDS])

    def reports(self, *, limit: int = 100, job_id: str | None = None) -> list[PageReport]:
        """The newest reports first (they outlive a deleted story: whoever runs the server keeps them)."""
        query = f"SELECT {', '.join(_REPORT_FIELDS)} FROM reports"
        arguments: list[object] = []
        if job_id is not None:
            query += " WHERE job_id = ?"
            arguments.append(job_id)
        query += " ORDER BY created_at DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(query, [*arguments, limit]).fetchall()
        return [PageReport.model_validate(dict(zip(_REPORT_FIELDS, row))) for row in rows]

    @staticmethod
    def _to_row(record: JobRecord) -> dict:
        row = record.model_dump()
        row["status"] = record.status.value
        row["stage"] = record.stage.value
        row["options"] = json.dumps(record.options)
        return row

    @staticmethod
    def _from_row(row: tuple) -> JobRecord:
        data = dict(zip(_FIELDS, row))
        data["options"] = json.loads(data["options"])
        return JobRecord.model_validate(data)
