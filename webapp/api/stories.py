"""Stories: make one from a photo, read it, delete it, fetch its pictures."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Path, Request, Response, UploadFile
from fastapi.responses import FileResponse
from pydantic import Field

from shared.errors import NotFound
from shared.images import check_upload_size
from webapp.api.deps import RateLimit, StateDep, WorkshopDep, client_key
from webapp.api.links import accepted, story_path, story_view
from webapp.api.schemas import StoryAccepted, StoryView
from webapp.jobs.reading import IMAGE_NAME
from webapp.story.forms import StoryForm

router = APIRouter(prefix="/stories", tags=["stories"])


class StoryUpload(StoryForm):
    """The multipart body of a new story: the photo, an optional brand logo, and the book's options."""

    photo: UploadFile = Field(description="The photo the story is about (JPEG, PNG, WebP or GIF).")
    logo: UploadFile | None = Field(default=None, description="Brand logo (optional).")

StoryId = Annotated[str, Path(description="The story's id, as returned when it was created.", max_length=80)]
_MEDIA_TYPES = {"png": "image/png", "jpg": "image/jpeg"}


async def _read_upload(upload: UploadFile, *, max_bytes: int, param: str) -> bytes:
    if upload.size is not None:
        check_upload_size(upload.size, max_bytes=max_bytes, param=param)
    data = await upload.read(max_bytes + 1)
    check_upload_size(len(data), max_bytes=max_bytes, param=param)
    return data


@router.post(
    "",
    status_code=202,
    response_model=StoryAccepted,
    dependencies=[RateLimit],
    summary="Make a storybook from a photo.",
    description="Upload a photo and the book's options; the book is made in the background. Follow `links.events` for progress.",
)
async def create_story(
    request: Request,
    response: Response,
    state: StateDep,
    workshop: WorkshopDep,
    upload: Annotated[StoryUpload, File(media_type="multipart/form-data")],
) -> StoryAccepted:
    settings = state.settings
    options = upload.options(max_pages=settings.max_book_pages, blocked_words=tuple(settings.blocked_words))
    photo, logo = upload.photo, upload.logo
    photo_bytes = await _read_upload(photo, max_bytes=settings.max_upload_bytes, param="photo")
    logo_bytes = await _read_upload(logo, max_bytes=settings.max_upload_bytes, param="logo") if logo is not None and logo.filename else None
    record = await workshop.stories.submit_upload(photo_bytes, options, logo=logo_bytes, client=client_key(request))
    response.headers["Location"] = story_path(record.id)
    return accepted(record, state.public_url)


@router.get("/{story_id}", response_model=StoryView, summary="A story's progress, pages, pictures and book link.")
async def get_story(story_id: StoryId, state: StateDep, workshop: WorkshopDep) -> StoryView:
    return story_view(workshop.stories, workshop.stories.get(story_id), state.public_url)


@router.delete("/{story_id}", status_code=204, summary="Delete a story: its pictures, photo and book link are gone.")
async def delete_story(story_id: StoryId, workshop: WorkshopDep) -> Response:
    await workshop.stories.delete(story_id)
    return Response(status_code=204)


@router.get(
    "/{story_id}/images/{name}",
    summary="A picture: cover.png, page-NN.png, or the uploaded photo.jpg.",
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}},
)
async def get_image(story_id: StoryId, name: Annotated[str, Path(max_length=40)], workshop: WorkshopDep) -> FileResponse:
    workshop.stories.get(story_id)
    if not IMAGE_NAME.match(name):
        raise NotFound(f"There is no picture called {name!r}; pictures are cover.png, page-01.png, page-02.png, … and photo.jpg.", param="name")
    path = workshop.stories.file(story_id, name)
    if path is None:
        raise NotFound(f"The picture {name} is not painted yet.", param="name")
    return FileResponse(path, media_type=_MEDIA_TYPES[name.rsplit(".", 1)[1]], headers={"Cache-Control": "private, no-cache"})
