"""Changing a finished story without redoing the rest: a page's picture or text, more pages, another version."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request

from webapp.api.bodies import body_schema, read_body, readable_body
from webapp.api.deps import RateLimit, StateDep, WorkshopDep
from webapp.api.links import accepted
from webapp.api.schemas import MorePages, PageEdit, StoryAccepted

# The content type is checked first, so a refused body does not count against the client's changes per minute.
router = APIRouter(prefix="/stories", tags=["edits"], dependencies=[Depends(readable_body), RateLimit])

StoryId = Annotated[str, Path(description="The story's id.", max_length=80)]


@router.post(
    "/{story_id}/pages/{page}/regenerate",
    status_code=202,
    response_model=StoryAccepted,
    summary="Paint a page's picture again, or rewrite its text; then the book is bound again.",
    description="Page 0 is the cover (picture only). Body (JSON or form): `what` = image | text, optional `instruction`.",
    openapi_extra=body_schema(PageEdit),
)
async def regenerate_page(
    story_id: StoryId, page: Annotated[int, Path(ge=0, le=99)], request: Request, state: StateDep, workshop: WorkshopDep
) -> StoryAccepted:
    edit = await read_body(request, PageEdit)
    stories = workshop.stories
    record = stories.regenerate_image(story_id, page) if edit.what == "image" else stories.rewrite_text(story_id, page, edit.instruction)
    return accepted(record, state.public_url)


@router.post(
    "/{story_id}/pages",
    status_code=202,
    response_model=StoryAccepted,
    summary="Continue the story with more pages; then the book is bound again.",
    openapi_extra=body_schema(MorePages),
)
async def add_pages(story_id: StoryId, request: Request, state: StateDep, workshop: WorkshopDep) -> StoryAccepted:
    more = await read_body(request, MorePages)
    return accepted(workshop.stories.add_pages(story_id, more.count), state.public_url)


@router.post(
    "/{story_id}/versions",
    status_code=202,
    response_model=StoryAccepted,
    summary="Make another version from the same photo and options (a new story; both are kept).",
)
async def new_version(story_id: StoryId, state: StateDep, workshop: WorkshopDep) -> StoryAccepted:
    return accepted(workshop.stories.new_version(story_id), state.public_url)


@router.post(
    "/{story_id}/cancel", status_code=202, response_model=StoryAccepted,
    summary="Stop a story being made; its finished pages are kept and `resume` goes on from there.",
)
async def cancel_story(story_id: StoryId, state: StateDep, workshop: WorkshopDep) -> StoryAccepted:
    return accepted(await workshop.stories.cancel(story_id), state.public_url)


@router.post("/{story_id}/resume", status_code=202, response_model=StoryAccepted, summary="Continue a failed or interrupted story from its last saved step.")
async def resume_story(story_id: StoryId, state: StateDep, workshop: WorkshopDep) -> StoryAccepted:
    return accepted(workshop.stories.resume(story_id), state.public_url)
