"""A book's pieces in flight at once: every page's picture, its text and its reading aloud, each started the moment
what it needs exists. This is the one place that decides what runs concurrently while a book is made.

- A page's picture is asked for when its beat (its scene) is settled in the streamed outline. The cover's shows the
  title over the story's opening (page 1's beat, which is the outline's cover prompt): it is asked for once the
  title and the characters' looks are settled too (with the first beat the outline streams), so it shares an early
  image call rather than the last one, and the audiobook, which shows it, need not wait for the last pictures.
  The pictures go to the image service in groups that share its model calls (`picture_groups.py`: page 1's
  picture at once and alone, later ones together while the device is busy, the last ones together).
- A page's text starts once the next page's beat exists too (so the page can lead into it), or it is the last
  page, or the outline is complete; page 1 at once when it is the photo's own scene.
- A page is read aloud the moment its text (in the book's language) exists; the title too.
- With `first_page_first` (a CPU shared by the pictures and the writer), the other pages' words wait until page 1's
  exist, and every picture but page 1's until page 1's picture and words exist, so the page a reader waits for is
  not slowed down by the others (a language model decoding eight pages at once gives each a fraction of its speed).
Leaving the `async with` block cancels whatever is still running, so no piece outlives its book's run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from types import TracebackType
from typing import TypeVar

from webapp.jobs.picture_groups import Paint, PictureGroups
from webapp.jobs.progress import COVER
from webapp.story.plan import Character, OutlineDraft

Write = Callable[[OutlineDraft, int], Awaitable[tuple[str, str]]]  # the outline so far, page → (English, book's language)
ReadAloud = Callable[[int, str], Awaitable[None]]  # page (0: the title), its words
SaveDraft = Callable[[OutlineDraft], None]
T = TypeVar("T")


class PagesInFlight:
    def __init__(
        self, pages: int, *, paint: Paint, write: Write, read_aloud: ReadAloud | None, save_draft: SaveDraft, pictures_per_call: int = 8,
        first_page_first: bool = False,
    ) -> None:
        """`pictures_per_call`: the most pictures one call of the image service paints (its FABULA_MAX_BATCH_SIZE).
        `first_page_first`: the other pictures wait until page 1's picture and words exist (for a CPU that the
        pictures share with the writer: they would slow down the page the reader is waiting for)."""
        self.pages = pages
        self._write, self._read_aloud, self._save_draft = write, read_aloud, save_draft
        self._page_one_done = asyncio.Event() if first_page_first else None
        self._latest: tuple[OutlineDraft, bool] | None = None  # the outline as last seen, and whether it was complete
        self._pictures = PictureGroups(
            paint, [COVER, *range(1, pages + 1)], per_call=pictures_per_call, later_wait_for=self._page_one_done,
        )
        self.pictures = self._pictures.tasks
        self.texts: dict[int, asyncio.Task[tuple[str, str]]] = {}
        self.voices: dict[int, asyncio.Task[None]] = {}

    async def __aenter__(self) -> PagesInFlight:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self._pictures.close()
        for task in [*self.texts.values(), *self.voices.values()]:
            task.cancel()

    async def on_beat(self, draft: OutlineDraft, page: int) -> None:
        """The outline's writer settled a beat: save the draft (a restart goes on from it), start what is ready."""
        if not (page == 1 and draft.opening):  # the photo's scene came with the caption, not at the outline's pace
            self._pictures.beat()
        self._save_draft(draft)
        self.start_ready(draft)

    def start_ready(self, draft: OutlineDraft, *, complete: bool = False) -> None:
        self._latest = (draft, complete)
        characters = draft.characters or []
        for page in sorted(draft.beats):
            if page not in self.pictures:
                self.paint(page, draft.beats[page], characters)
            opening = page == 1 and draft.opening  # the photo's scene: it needs no plan around it
            waits = page > 1 and self._page_one_done is not None and not (1 in self.texts and self.texts[1].done())
            if page not in self.texts and not waits and (page + 1 in draft.beats or page == self.pages or complete or opening):
                snapshot = draft.model_copy(update={"beats": dict(draft.beats)})
                task = asyncio.ensure_future(self._write(snapshot, page))
                task.add_done_callback(partial(self._read_when_written, page))
                self.texts[page] = task
                if page == 1:
                    task.add_done_callback(self._page_one_piece_done)
        streamed = any(page > 1 or not draft.opening for page in draft.beats)  # the characters' looks are read by then
        if COVER not in self.pictures and not complete and draft.title and 1 in draft.beats and streamed:
            self.paint(COVER, cover_scene(draft.title, draft.beats[1]), characters)

    def paint(self, page: int, scene: str, characters: list[Character]) -> None:
        self._pictures.want(page, scene, characters)
        if page == 1:
            self.pictures[1].add_done_callback(self._page_one_piece_done)

    def _page_one_piece_done(self, task: asyncio.Future) -> None:
        """Page 1's picture or words are done (or failed: the rest then go on, and the failure is raised as ever).
        Its words done, the other pages' words start; both done, the other pictures go."""
        if self._page_one_done is None:
            return
        if 1 in self.texts and task is self.texts[1]:
            self._start_latest()
        if all(1 in tasks and tasks[1].done() for tasks in (self.pictures, self.texts)):
            self._page_one_done.set()

    async def title(self, translated: Awaitable[str]) -> str:
        """The title in the book's language; read aloud as soon as it exists."""
        title = await translated
        self._read(COVER, title)
        return title

    async def written(self) -> list[tuple[str, str]]:
        """Every page's (English, book's language) text, in page order, once all are written (called once the
        outline is complete)."""
        if self._page_one_done is not None and 1 in self.texts:
            await asyncio.gather(self.texts[1], return_exceptions=True)
            self._start_latest()
        return await gather_all([self.texts[page] for page in range(1, self.pages + 1)])

    def _start_latest(self) -> None:
        if self._latest is not None:
            draft, complete = self._latest
            self.start_ready(draft, complete=complete)

    async def painted(self) -> None:
        await gather_all(list(self.pictures.values()))

    async def read(self) -> None:
        await gather_all(list(self.voices.values()))

    def _read_when_written(self, page: int, task: asyncio.Task[tuple[str, str]]) -> None:
        if not task.cancelled() and task.exception() is None:
            self._read(page, task.result()[1])

    def _read(self, page: int, text: str) -> None:
        if self._read_aloud is not None:
            self.voices[page] = asyncio.ensure_future(self._read_aloud(page, text))


def cover_scene(title: str, prompt: str) -> str:
    """What the cover shows: the title over its prompt."""
    return f"{title}: {prompt}"


async def gather_all(awaitables: list[Awaitable[T]]) -> list[T]:
    """Wait for all; the first failure is raised once every one has ended (so none is left running unseen)."""
    results = await asyncio.gather(*awaitables, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]  # every one is a T: a failure was raised above
