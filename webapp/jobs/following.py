"""Following a story's progress: its current state first, then every change, until it is done or failed.

The REST API's server-sent events, the studio page and the CLI all follow stories through here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from webapp.jobs.models import JobEvent, JobStatus
from webapp.jobs.reading import current_event
from webapp.jobs.stories import Stories

FINISHED = (JobStatus.done, JobStatus.failed)
# How often a quiet stream checks that its story still exists (a deleted story sends no more events).
_CHECK_INTERVAL_S = 5.0


async def follow_events(stories: Stories, story_id: str) -> AsyncIterator[JobEvent]:
    """Yield the current state, then each event, ending after done/failed (or when the story is deleted)."""
    queue = stories.events.subscribe(story_id)
    try:
        record = stories.get(story_id)
        yield current_event(stories, record)
        if record.status in FINISHED:
            return
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), timeout=_CHECK_INTERVAL_S)
            except TimeoutError:
                # A quiet stream reads the job itself: an event lost on its way (a broker reconnect) ends nothing.
                latest = stories.store.get(story_id)
                if latest is None:
                    return
                if latest.status in FINISHED:
                    yield current_event(stories, latest)
                    return
                continue
            yield event
            if event.status in FINISHED:
                return
    finally:
        stories.events.unsubscribe(story_id, queue)
