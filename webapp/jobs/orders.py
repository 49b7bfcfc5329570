"""A work order: what a scheduler hands to whoever runs books (a task in this process, or a Celery worker).

Orders are plain data, so they travel through a broker; every order is safe to run again (its steps look for
what is already saved), which is what at-least-once delivery needs.
"""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import BaseModel, Field

Kind = Literal["book", "repaint", "rewrite", "extend"]


class WorkOrder(BaseModel):
    job_id: str = Field(max_length=80)
    kind: Kind = "book"
    page: int | None = None
    instruction: str | None = None
    count: int | None = None


class Outcome(str, Enum):
    done = "done"  # the order ran (the book may have failed: the job says so)
    skipped = "skipped"  # the job is gone or already finished
    held = "held"  # another worker is making it now
