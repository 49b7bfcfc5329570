"""Server-sent progress events: the story's current state first, then every change, until it is done or failed."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

from fastapi import APIRouter
from sse_starlette import EventSourceResponse

from webapp.api.deps import StudioDep
from webapp.api.stories import StoryId
from webapp.api.views import current_event
from webapp.jobs.models import JobEvent, JobStatus
from webapp.studio import Studio

router = APIRouter(prefix="/stories", tags=["stories"])

FINISHED = (JobStatus.done, JobStatus.failed)
# How often a quiet stream checks that its story still exists (a deleted story sends no more events).
_CHECK_INTERVAL_S = 5.0


async def follow_events(studio: Studio, story_id: str) -> AsyncIterator[JobEvent]:
    """Yield the current state, then each event, ending after done/failed (or when the story is deleted)."""
    queue = studio.events.subscribe(story_id)
    try:
        record = studio.runner.get(story_id)
        yield current_event(studio, record)
        if record.status in FINISHED:
            return
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), timeout=_CHECK_INTERVAL_S)
            except TimeoutError:
                if studio.store.get(story_id) is None:
                    return
                continue
            yield event
            if event.status in FINISHED:
                return
    finally:
        studio.events.unsubscribe(story_id, queue)


@router.get(
    "/{story_id}/events",
    summary="Progress as server-sent events: one `data:` JSON event per change, ending after done or failed.",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {"schema": JobEvent.model_json_schema()}}}},
)
async def story_events(story_id: StoryId, studio: StudioDep) -> EventSourceResponse:
    studio.runner.get(story_id)

    async def stream() -> AsyncIterator[dict]:
        async for event in follow_events(studio, story_id):
            yield {"event": "progress", "data": event.model_dump_json()}

    return EventSourceResponse(stream(), ping=15, sep="\n")
