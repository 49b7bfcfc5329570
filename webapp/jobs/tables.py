"""The job database's tables (SQLAlchemy Core): jobs, their saved steps, and readers' page reports.

The same tables serve SQLite (one machine, the default) and PostgreSQL (`FABULA_DATABASE_URL`); Alembic
migrations under `webapp/jobs/migrations/` create and change them.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, ForeignKey, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(80), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("stage", String(16), nullable=False),
    Column("options", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("pages_total", Integer, nullable=False),
    Column("pages_done", Integer, nullable=False, server_default="0"),
    Column("error", Text),
    Column("error_type", String(64)),
    Column("book_token", String(128), unique=True),
    Column("book_expires_at", Float),
    Column("book_version", Integer, nullable=False, server_default="0"),
    Column("parent_id", String(80)),
    Column("client", String(128)),
    Column("lease_owner", String(128)),  # the worker making the book now (one at a time)
    Column("lease_until", Float),
    Column("swept_at", Float),  # when the sweeper last sent the book's order again
    Index("jobs_status", "status"),
)

steps = Table(
    "steps",
    metadata,
    Column("job_id", String(80), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("data", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)

reports = Table(
    "reports",
    metadata,
    Column("id", String(80), primary_key=True),
    Column("job_id", String(80), nullable=False),
    Column("page", Integer, nullable=False),
    Column("what", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("action", String(16), nullable=False),
    Column("client", String(128)),
    Column("created_at", Float, nullable=False),
    Index("reports_created", "created_at"),
)

JOB_FIELDS = [column.name for column in jobs.columns if not column.name.startswith("lease_") and column.name != "swept_at"]
REPORT_FIELDS = [column.name for column in reports.columns]
