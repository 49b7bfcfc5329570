"""Opening the job database: SQLite under FABULA_DATA_DIR by default, PostgreSQL with FABULA_DATABASE_URL, its
schema brought up to date by Alembic, and a damaged file named in plain words instead of a traceback."""

from __future__ import annotations

import logging
import zlib
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DatabaseError, InterfaceError, OperationalError

from shared.errors import FabulaError
from shared.settings import Settings

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
_MIGRATION_LOCK = zlib.crc32(b"fabula-migrations")


class JobDatabaseError(FabulaError):
    """The job database cannot be opened or read: its file is damaged, or its server cannot be reached."""

    status_code = 503
    error_type = "job_database_error"


# The job database went away (its server stopped, the network dropped): the book is fine; try it again later.
DATABASE_OUTAGES: tuple[type[Exception], ...] = (OperationalError, InterfaceError, JobDatabaseError)


def database_url(settings: Settings) -> str:
    return settings.database_url or f"sqlite:///{settings.data_dir / 'jobs.sqlite3'}"


def describe(url: str) -> str:
    """The database for a person: the SQLite file's path, or the server without its password."""
    parsed = make_url(url)
    return parsed.database or url if parsed.get_backend_name() == "sqlite" else parsed.render_as_string(hide_password=True)


def open_engine(url: str) -> Engine:
    """An engine with the settings each backend needs; SQLite writes (connections with the `immediate` execution
    option) take the write lock when they begin, so a check-then-insert (the queue cap) cannot race another writer."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(connection: Connection) -> None:
            # Writes take the write lock when they begin (`immediate`); reads begin deferred and never wait on it.
            connection.exec_driver_sql("BEGIN IMMEDIATE" if connection.get_execution_options().get("immediate") else "BEGIN")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration (several replicas may start at once: one migrates at a time)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def open_database(settings: Settings) -> Engine:
    """The job database, checked and migrated; raises `JobDatabaseError` saying which database and what to do."""
    url = database_url(settings)
    engine = open_engine(url)
    try:
        with engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                verdict = connection.exec_driver_sql("PRAGMA quick_check").scalar()
                if verdict != "ok":
                    raise DatabaseError("PRAGMA quick_check", None, Exception(str(verdict)))
        upgrade(engine)
    except (DatabaseError, OperationalError) as exc:
        engine.dispose()
        raise database_error(url, exc) from None
    return engine


def database_error(url: str, exc: Exception) -> JobDatabaseError:
    where = describe(url)
    detail = str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]
    if make_url(url).get_backend_name() == "sqlite":
        return JobDatabaseError(
            f"The job database {where} cannot be read ({detail}). It is damaged or is not a Fabula database. "
            f"Move it aside (`mv {where} {where}.damaged`) to start with an empty one, or restore it from a backup; "
            "`fabula doctor` checks it again.",
            param="FABULA_DATA_DIR",
        )
    return JobDatabaseError(
        f"The job database {where} cannot be reached or read ({detail}). Check that the server is up and that "
        "FABULA_DATABASE_URL is right; `fabula doctor` checks it again.",
        param="FABULA_DATABASE_URL",
    )


def health_line(settings: Settings) -> str:
    """For `fabula doctor`: the job database and whether it opens (a damaged file is named with what to do)."""
    try:
        open_database(settings).dispose()
    except JobDatabaseError as exc:
        return f"PROBLEM: {exc.message}"
    return f"{describe(database_url(settings))}: opens and is up to date."
