"""What the job store holds about a job (pydantic), independent of the database behind it."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel


class JobStatus(str, Enum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"


class Stage(str, Enum):
    queued = "queued"
    caption = "caption"
    plan = "plan"
    illustrate = "illustrate"
    narrate = "narrate"
    book = "book"
    done = "done"


# What a follower is told when a book enters each stage (the pipeline says more as pieces are finished).
STAGE_MESSAGES = {
    Stage.queued: "Waiting for a free slot…",
    Stage.caption: "Looking at the photo…",
    Stage.plan: "Writing the story…",
    Stage.illustrate: "Writing and painting the pages…",
    Stage.narrate: "Reading the book aloud…",
    Stage.book: "Binding the book…",
    Stage.done: "Your book is ready.",
}


class JobRecord(BaseModel):
    id: str
    status: JobStatus
    stage: Stage
    options: dict
    created_at: float
    updated_at: float
    pages_total: int
    pages_done: int = 0
    error: str | None = None
    error_type: str | None = None
    book_token: str | None = None
    book_expires_at: float | None = None
    book_version: int = 0
    parent_id: str | None = None
    client: str | None = None


class JobEvent(BaseModel):
    """A progress event, as sent over server-sent events and shown in the UI and the CLI."""

    job_id: str
    status: JobStatus
    stage: Stage
    pages_done: int
    pages_total: int
    message: str = ""
    page: int | None = None
    error: str | None = None


class PageReport(BaseModel):
    """A reader's report on a page: kept for whoever runs the server, and the page is painted or written again."""

    id: str
    job_id: str
    page: int
    what: str  # "picture" or "text"
    reason: str
    action: str  # what was done: "repainted", "rewritten", or "kept" (the book was still being made)
    client: str | None = None
    created_at: float
