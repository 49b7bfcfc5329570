"""The orchestration core in-process, against scripted stand-ins of the model services: what runs at once, what a
resumed book redoes, what each edit changes, one language per book. Real job store (SQLite), real artifact folder,
real binding; no servers, so each test takes about a second."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pypdf import PdfReader

from shared.errors import Conflict
from shared.settings import Profile, Settings
from tests.scripted_parts import ScriptedCaptioner, ScriptedIllustrator, ScriptedWriter, png
from webapp.jobs.artifacts import ArtifactStore
from webapp.jobs.database import open_database
from webapp.jobs.dispatch import LeasedDispatch
from webapp.jobs.events import LocalEventBus
from webapp.jobs.ledger import JobLedger
from webapp.jobs.models import JobEvent, JobRecord, JobStatus
from webapp.jobs.orders import Outcome, WorkOrder
from webapp.jobs.painting import PagePainter, PaintingConfig
from webapp.jobs.pipeline import PipelineConfig, StoryPipeline
from webapp.jobs.progress import COVER, Artifacts
from webapp.jobs.reading import load_story
from webapp.jobs.schedulers import InProcessScheduler
from webapp.jobs.seeds import seed_for
from webapp.jobs.sql_store import SqlJobStore
from webapp.jobs.stories import Stories
from webapp.story.options import StoryOptions
from webapp.ui.render import reader_html

PHOTO = png((200, 120, 40), size=64)


@dataclass
class Core:
    stories: Stories
    pipeline: StoryPipeline
    dispatch: LeasedDispatch
    writer: ScriptedWriter
    illustrator: ScriptedIllustrator
    captioner: ScriptedCaptioner

    async def made(self, options: StoryOptions) -> JobRecord:
        record = self.stories.submit(PHOTO, options)
        return await asyncio.wait_for(self.stories.wait(record.id), timeout=60)

    async def edited(self, record: JobRecord) -> JobRecord:
        return await asyncio.wait_for(self.stories.wait(record.id), timeout=60)


@pytest.fixture
async def core(tmp_path: Path) -> AsyncIterator[Core]:
    settings = Settings(profile=Profile.tiny, data_dir=tmp_path, job_lease_s=3.0)
    store = SqlJobStore(open_database(settings))
    artifacts = ArtifactStore(tmp_path / "artifacts")
    events = LocalEventBus()
    ledger = JobLedger(store, events, artifacts)
    writer, illustrator, captioner = ScriptedWriter(beat_delay_s=0.02), ScriptedIllustrator(), ScriptedCaptioner()
    painter = PagePainter(illustrator, artifacts, ledger, PaintingConfig(image_size=16, max_safety_repaints=2))  # type: ignore[arg-type]
    pipeline = StoryPipeline(
        ledger=ledger, artifacts=artifacts, captioner=captioner, writer=writer, painter=painter, narrator=None,  # type: ignore[arg-type]
        config=PipelineConfig(public_url="http://127.0.0.1:7860"),
    )
    dispatch = LeasedDispatch(store, pipeline.run, lease_s=settings.job_lease_s)
    stories = Stories(store=store, artifacts=artifacts, events=events, scheduler=InProcessScheduler(dispatch), settings=settings)
    yield Core(stories, pipeline, dispatch, writer, illustrator, captioner)
    await stories.shutdown()
    store.close()


def seed_of(core: Core, record: JobRecord, page: int) -> int | None:
    picture = core.stories.progress(record.id).picture(page)
    assert picture is not None
    return picture.seed


def pdf_pages(core: Core, record: JobRecord) -> int:
    path = core.stories.file(record.id, Artifacts.PDF)
    assert path is not None
    return len(PdfReader(path).pages)


async def test_pictures_and_texts_start_while_the_outline_is_still_being_written(core: Core) -> None:
    record = await core.made(StoryOptions(pages=6, narrate=False))

    assert record.status == JobStatus.done, record.error
    first_picture = min(at for _, at in core.illustrator.log)
    assert core.writer.outline_finished_at is not None and first_picture < core.writer.outline_finished_at
    # Page 1's text was asked for before the outline's last beat, and the outline was written once.
    calls = core.writer.calls
    assert calls.count("outline") == 1 and calls.index("write:1") < len(calls) - 1
    assert {f"write:{page}" for page in range(1, 7)} <= set(calls)
    progress = core.stories.progress(record.id)
    assert progress.plan is not None and len(progress.plan.pages) == 6
    assert all(core.stories.file(record.id, Artifacts.picture(page)) for page in range(0, 7))
    assert pdf_pages(core, record) >= 8  # cover, six pages, the QR page
    assert set(progress.stage_seconds) >= {"caption", "plan", "write", "illustrate", "book"}


async def test_a_page_shows_the_moment_its_picture_exists_while_the_outline_is_still_being_written(core: Core) -> None:
    core.writer.beat_delay_s = 0.3  # a slow planner: six beats take about two seconds
    record = core.stories.submit(PHOTO, StoryOptions(pages=6, narrate=False))
    queue = core.stories.events.subscribe(record.id)
    while (await asyncio.wait_for(queue.get(), timeout=30)).message != "Page 1 painted.":
        pass
    shown = load_story(core.stories, core.stories.get(record.id), "http://127.0.0.1:7860")
    assert core.stories.progress(record.id).outline is None, "the outline was already complete: nothing to show early"
    assert shown.pages and shown.pages[0].image_path is not None
    assert len(shown.pages) < 6  # only the pages the outline has settled so far
    assert "Being written…" in reader_html(shown) or all(page.text for page in shown.pages)
    done = await core.stories.wait(record.id)
    assert done.status == JobStatus.done and len(load_story(core.stories, done, "http://127.0.0.1:7860").pages) == 6


async def test_every_piece_is_told_to_followers_as_it_is_finished(core: Core) -> None:
    record = core.stories.submit(PHOTO, StoryOptions(pages=3, narrate=False))
    queue = core.stories.events.subscribe(record.id)
    await core.stories.wait(record.id)
    events: list[JobEvent] = []
    while not queue.empty():
        events.append(queue.get_nowait())
    messages = [event.message for event in events]
    assert {"Page 1 painted.", "Page 2 written.", "Cover painted."} <= set(messages)
    assert messages[-1] == "Your book is ready." and events[-1].pages_done == 3
    done = [event.pages_done for event in events]
    assert done == sorted(done)  # pages done never goes back


async def test_a_failed_book_resumes_from_what_was_saved(core: Core) -> None:
    core.illustrator.fail_scenes = {"clue number 3"}  # page 3's picture fails once (an outage); retries are the client's job
    record = await core.made(StoryOptions(pages=4, narrate=False))
    assert record.status == JobStatus.failed
    assert "illustrate service failed" in (record.error or "")
    painted_before = len(core.illustrator.requests)

    core.stories.resume(record.id)
    record = await core.edited(record)

    assert record.status == JobStatus.done, record.error
    assert core.writer.calls.count("outline") == 1 and core.captioner.calls == 1  # nothing saved is made again
    assert len(core.illustrator.requests) - painted_before <= 2  # page 3 and, if it was cut short, the cover
    assert pdf_pages(core, record) >= 6


async def test_a_cancelled_book_stops_keeps_its_pages_and_resume_finishes_it(core: Core) -> None:
    core.writer.beat_delay_s = 0.3
    record = core.stories.submit(PHOTO, StoryOptions(pages=6, narrate=False))
    queue = core.stories.events.subscribe(record.id)
    while (await asyncio.wait_for(queue.get(), timeout=30)).message != "Page 1 painted.":
        pass
    stopped = await core.stories.cancel(record.id)
    assert stopped.status == JobStatus.failed and stopped.error_type == "cancelled" and "Resume" in (stopped.error or "")
    painted = {page: seed_of(core, record, page) for page in range(1, 7) if core.stories.progress(record.id).picture(page)}
    requests = len(core.illustrator.requests)
    await asyncio.sleep(0.5)
    assert len(core.illustrator.requests) == requests, "the book went on after it was cancelled"
    with pytest.raises(Conflict):
        await core.stories.cancel(record.id)  # nothing left to stop

    core.writer.beat_delay_s = 0.0
    core.stories.resume(record.id)
    done = await core.edited(record)
    assert done.status == JobStatus.done, done.error
    assert all(seed_of(core, record, page) == seed for page, seed in painted.items())  # kept, not painted again
    assert core.writer.calls.count("outline") == 2  # the outline went on from its saved draft


async def test_a_repaint_paints_one_picture_with_the_next_seed(core: Core) -> None:
    record = await core.made(StoryOptions(pages=2, seed=11, narrate=False))
    before = {page: seed_of(core, record, page) for page in (COVER, 1, 2)}
    painted = len(core.illustrator.requests)

    record = await core.edited(core.stories.regenerate_image(record.id, 2))

    after = {page: seed_of(core, record, page) for page in (COVER, 1, 2)}
    assert record.status == JobStatus.done and record.book_version == 2
    assert after[2] != before[2] and after[1] == before[1] and after[COVER] == before[COVER]
    assert len(core.illustrator.requests) - painted == 1  # that picture alone


async def test_a_rewrite_changes_one_page_in_both_languages_once(core: Core) -> None:
    record = await core.made(StoryOptions(pages=3, language="de", narrate=False))
    words = core.stories.progress(record.id).words
    assert words is not None and all(text.startswith("[de] ") for text in words.pages)

    record = await core.edited(core.stories.rewrite_text(record.id, 2, "make it funnier"))
    progress = core.stories.progress(record.id)
    assert progress.plan is not None and progress.words is not None
    assert "make it funnier" in progress.plan.pages[1].text
    assert progress.words.pages[1].startswith("[de] ") and "make it funnier" in progress.words.pages[1]
    assert progress.words.pages[0] == words.pages[0]

    # The same order delivered again (a broker redelivery) changes nothing more.
    rewrites = core.writer.calls.count("rewrite:2")
    core.stories.store.update(record.id, status=JobStatus.queued)
    assert await core.dispatch.perform(WorkOrder(job_id=record.id, kind="rewrite", page=2, instruction="make it funnier"), owner="again") == Outcome.done
    assert core.writer.calls.count("rewrite:2") == rewrites


async def test_adding_pages_writes_translates_and_paints_only_the_new_ones(core: Core) -> None:
    record = await core.made(StoryOptions(pages=2, language="de", narrate=False))
    painted = len(core.illustrator.requests)

    record = await core.edited(core.stories.add_pages(record.id, 2))

    assert record.status == JobStatus.done, record.error
    assert record.pages_total == 4 and record.options["pages"] == 4
    progress = core.stories.progress(record.id)
    assert progress.plan is not None and progress.words is not None
    assert [page.text for page in progress.plan.pages[2:]] == ["Page 3: and then more.", "Page 4: and then more."]
    assert progress.words.pages[2:] == ["[de] Page 3: and then more.", "[de] Page 4: and then more."]
    assert len(core.illustrator.requests) - painted == 2  # pages 3 and 4, nothing else repainted
    assert pdf_pages(core, record) >= 6


async def test_a_language_the_model_cannot_write_makes_the_whole_book_english_and_says_so(core: Core) -> None:
    core.writer.cannot_write = {"fi"}
    record = await core.made(StoryOptions(pages=3, language="fi", narrate=False))

    progress = core.stories.progress(record.id)
    assert record.status == JobStatus.done
    assert progress.language("fi") == "en"
    assert progress.language_note == "This model could not write Finnish; the book is in English."
    assert progress.words is not None and progress.plan is not None
    assert progress.words.pages == [page.text for page in progress.plan.pages]  # never a mix


async def test_a_flagged_picture_is_painted_again_with_new_seeds(core: Core) -> None:
    core.illustrator.flag_first = 1
    record = await core.made(StoryOptions(pages=1, seed=5, narrate=False))

    pictures = [core.stories.progress(record.id).picture(page) for page in (COVER, 1)]
    assert record.status == JobStatus.done
    assert sum(picture.repaints for picture in pictures if picture) == 1 and not any(picture.flagged for picture in pictures if picture)
    assert {picture.seed for picture in pictures if picture and picture.repaints} == {seed_for(5, 1)}  # the retry had the next seed


async def test_a_book_held_by_another_worker_is_not_made_twice(core: Core) -> None:
    record = core.stories.submit(PHOTO, StoryOptions(pages=1, narrate=False))
    await core.stories.wait(record.id)
    core.stories.store.update(record.id, status=JobStatus.queued)
    assert core.stories.store.acquire_lease(record.id, "elsewhere", 30.0)

    assert await core.dispatch.perform(WorkOrder(job_id=record.id), owner="here") == Outcome.held
    core.stories.store.release_lease(record.id, "elsewhere")
    assert await core.dispatch.perform(WorkOrder(job_id=record.id), owner="here") == Outcome.done
