"""The one seed rule: every piece of a book starts from the book's seed; its n-th redo adds n × 7919.

A piece's redo is a rewrite of its text, a repaint of its picture, or a picture painted again because the safety
classifier flagged it. So a book made twice with one seed is the same book, and every redo is new.
"""

from __future__ import annotations

from webapp.story.options import StoryOptions

SEED_STEP = 7919
_SEED_RANGE = 2**31 - 1


def book_seed(job_id: str, options: StoryOptions) -> int:
    """The seed asked for, else one derived from the job's id (stable across runs and workers)."""
    if options.seed is not None:
        return options.seed
    return int.from_bytes(job_id.encode()[-8:], "little") % (2**31 - 8000)


def seed_for(book: int, redo: int = 0) -> int:
    return (book + SEED_STEP * redo) % _SEED_RANGE
