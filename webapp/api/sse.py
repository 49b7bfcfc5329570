"""Server-sent progress events: the story's current state first, then every change, until it is done or failed."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter
from sse_starlette import EventSourceResponse

from webapp.api.deps import WorkshopDep
from webapp.api.stories import StoryId
from webapp.jobs.following import follow_events
from webapp.jobs.models import JobEvent

router = APIRouter(prefix="/stories", tags=["stories"])


@router.get(
    "/{story_id}/events",
    summary="Progress as server-sent events: one `data:` JSON event per change, ending after done or failed.",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {"schema": JobEvent.model_json_schema()}}}},
)
async def story_events(story_id: StoryId, workshop: WorkshopDep) -> EventSourceResponse:
    workshop.stories.get(story_id)

    async def stream() -> AsyncIterator[dict]:
        async for event in follow_events(workshop.stories, story_id):
            yield {"event": "progress", "data": event.model_dump_json()}

    return EventSourceResponse(stream(), ping=15, sep="\n")
