"""The orchestration core in-process, against scripted stand-ins of the model services: what runs at once, which
pictures share an image call, what a resumed book redoes, what each edit changes, one language per book. Real job
store (SQLite), real artifact folder, real binding; no servers, so each test takes about a second."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pypdf import PdfReader

from shared.clients import SpeechResult
from shared.errors import Conflict
from shared.schemas import ImageGenerationRequest, ImageGenerationResponse
from shared.settings import Profile, Settings
from tests.scripted_parts import ScriptedCaptioner, ScriptedIllustrator, ScriptedWriter, png
from webapp.book.audio import PcmClip
from webapp.jobs.artifacts import ArtifactStore
from webapp.jobs.database import open_database
from webapp.jobs.dispatch import LeasedDispatch
from webapp.jobs.events import LocalEventBus
from webapp.jobs.ledger import JobLedger
from webapp.jobs.models import JobEvent, JobRecord, JobStatus
from webapp.jobs.narration import PageNarrator
from webapp.jobs.orders import Outcome, WorkOrder
from webapp.jobs.painting import PagePainter, PaintingConfig
from webapp.jobs.picture_groups import PictureGroups, call_overhead
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


@dataclass
class ScriptedVoice:
    """Speaks every sentence at once as a fifth of a second of a real 16-bit WAV."""

    async def speech(self, text: str, *, voice: str, language: str, response_format: str = "wav", speed: float = 1.0) -> SpeechResult:
        clip = PcmClip(1, 2, 16_000, b"\x10\x00" * 3_200).wav()
        return SpeechResult(audio=clip, duration=0.2, voice="scripted", format="wav")


@dataclass
class SlowIllustrator(ScriptedIllustrator):
    """Holds each picture whose prompt names one of `held` until `release` is set (at most 30 s)."""

    held: set[str] = field(default_factory=set)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def generate(self, request: ImageGenerationRequest) -> ImageGenerationResponse:
        if any(scene in request.prompt for scene in self.held):
            await asyncio.wait_for(self.release.wait(), timeout=30)
        return await super().generate(request)


async def build_core(tmp_path: Path, *, illustrator: ScriptedIllustrator | None = None, narrate: bool = False) -> Core:
    settings = Settings(profile=Profile.tiny, data_dir=tmp_path, job_lease_s=3.0)
    store = SqlJobStore(open_database(settings))
    artifacts = ArtifactStore(tmp_path / "artifacts")
    events = LocalEventBus()
    ledger = JobLedger(store, events, artifacts)
    writer, captioner = ScriptedWriter(beat_delay_s=0.02), ScriptedCaptioner()
    illustrator = illustrator or ScriptedIllustrator()
    painter = PagePainter(illustrator, artifacts, ledger, PaintingConfig(image_size=16, max_safety_repaints=2))  # type: ignore[arg-type]
    narrator = PageNarrator(ScriptedVoice(), store=store, artifacts=artifacts, voice="scripted") if narrate else None  # type: ignore[arg-type]
    pipeline = StoryPipeline(
        ledger=ledger, artifacts=artifacts, captioner=captioner, writer=writer, painter=painter, narrator=narrator,  # type: ignore[arg-type]
        config=PipelineConfig(public_url="http://127.0.0.1:7860"),
    )
    dispatch = LeasedDispatch(store, pipeline.run, lease_s=settings.job_lease_s)
    stories = Stories(store=store, artifacts=artifacts, events=events, scheduler=InProcessScheduler(dispatch), settings=settings)
    return Core(stories, pipeline, dispatch, writer, illustrator, captioner)


@pytest.fixture
async def core(tmp_path: Path) -> AsyncIterator[Core]:
    made = await build_core(tmp_path)
    yield made
    await made.stories.shutdown()
    made.stories.store.close()


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
    # The cover (the title over page 1's scene) is asked for with the outline's first beats, not after its last.
    cover_asked = min(at for prompt, at in core.illustrator.log if prompt.startswith("The Lantern by the Lake"))
    assert cover_asked < core.writer.outline_finished_at
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


async def test_the_audiobook_is_bound_while_the_last_picture_is_still_being_painted(tmp_path: Path) -> None:
    illustrator = SlowIllustrator(held={"clue number 2"})
    core = await build_core(tmp_path, illustrator=illustrator, narrate=True)
    try:
        record = core.stories.submit(PHOTO, StoryOptions(pages=2, narrate=True))
        for _ in range(600):  # the audiobook needs every page read aloud and the cover, not page 2's picture
            if core.stories.file(record.id, Artifacts.AUDIOBOOK) or core.stories.get(record.id).status == JobStatus.failed:
                break
            await asyncio.sleep(0.05)
        assert core.stories.file(record.id, Artifacts.AUDIOBOOK), core.stories.get(record.id).error
        assert core.stories.progress(record.id).picture(2) is None  # page 2 is still being painted
        illustrator.release.set()
        done = await core.edited(record)
        assert done.status == JobStatus.done, done.error
        assert core.stories.progress(record.id).picture(2) is not None
        assert all(core.stories.file(record.id, name) for name in (Artifacts.PDF, Artifacts.EPUB, Artifacts.AUDIOBOOK))
    finally:
        illustrator.release.set()
        await core.stories.shutdown()
        core.stories.store.close()


# ---- which pictures share an image call (`PictureGroups`), on a clock the test moves -------------------------
@dataclass
class GatedPainting:
    """A paint function whose calls end when the test says: `started` lists the pages in the order they went out."""

    started: list[int] = field(default_factory=list)
    gates: dict[int, asyncio.Event] = field(default_factory=dict)

    async def __call__(self, page: int, scene: str, characters: list) -> None:
        self.started.append(page)
        await self.gate(page).wait()

    def gate(self, page: int) -> asyncio.Event:
        return self.gates.setdefault(page, asyncio.Event())

    def finish(self, *pages: int) -> None:
        for page in pages:
            self.gate(page).set()


@dataclass
class StoryClock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


async def settled() -> None:
    """Every ready task and callback has run (the groups decide on the next turn of the event loop)."""
    for _ in range(10):
        await asyncio.sleep(0)


def book_of_eight(painting: GatedPainting, clock: StoryClock) -> PictureGroups:
    return PictureGroups(painting, [COVER, *range(1, 9)], per_call=8, clock=clock)


async def beat(groups: PictureGroups, clock: StoryClock, page: int, at: float) -> None:
    clock.now = at
    groups.beat()
    groups.want(page, f"scene {page}", [])
    await settled()


async def page_one_painted_then_beats_to_seven(groups: PictureGroups, painting: GatedPainting, clock: StoryClock) -> None:
    """Page 1 alone (a call of one that takes 2 s; five beats to come at 0.5 s each is too long to wait for), pages 2
    and 3 while it is painted, then the beats of pages 4–7 while pages 2 and 3 are."""
    groups.want(1, "the photo's scene", [])
    await settled()
    await beat(groups, clock, 2, 1.0)
    await beat(groups, clock, 3, 1.5)
    clock.now = 2.0
    painting.finish(1)
    await settled()
    for page, at in ((4, 2.0), (5, 2.5), (6, 3.0), (7, 3.5)):
        await beat(groups, clock, page, at)


async def test_pictures_known_while_a_group_is_painted_go_together_as_the_next_group() -> None:
    painting, clock = GatedPainting(), StoryClock()
    groups = book_of_eight(painting, clock)
    groups.want(1, "the photo's scene", [])
    await settled()
    assert painting.started == [1]  # page 1 at once and alone: what the reader sees first
    await beat(groups, clock, 2, 1.0)
    await beat(groups, clock, 3, 1.5)
    assert painting.started == [1]  # page 1's call is still being painted: they wait in the book
    clock.now = 2.0
    painting.finish(1)
    await settled()
    assert painting.started == [1, 2, 3]
    groups.close()


async def test_the_last_pictures_wait_for_the_last_beat_when_one_call_holds_them() -> None:
    painting, clock = GatedPainting(), StoryClock()
    groups = book_of_eight(painting, clock)
    await page_one_painted_then_beats_to_seven(groups, painting, clock)
    assert painting.started == [1, 2, 3]
    clock.now = 4.0
    painting.finish(2, 3)  # two pictures took as long as one: a call costs 2 s whatever it holds
    await settled()
    assert painting.started == [1, 2, 3]  # the last beat is due now: pages 4-7 wait for it
    await beat(groups, clock, 8, 4.2)
    groups.want(COVER, "the title: the photo's scene", [])
    await settled()
    assert painting.started == [1, 2, 3, 4, 5, 6, 7, 8, COVER]  # one call holds the rest of the book
    groups.close()


async def test_on_a_device_whose_time_grows_with_each_picture_the_waiting_pictures_go_at_once() -> None:
    painting, clock = GatedPainting(), StoryClock()
    groups = book_of_eight(painting, clock)
    await page_one_painted_then_beats_to_seven(groups, painting, clock)
    clock.now = 6.0
    painting.finish(2, 3)  # two pictures took twice as long as one: waiting would save nothing
    await settled()
    assert painting.started == [1, 2, 3, 4, 5, 6, 7]
    groups.close()


def test_a_calls_overhead_is_what_its_time_does_not_grow_by_with_its_pictures() -> None:
    assert call_overhead([(1, 2.0), (3, 2.1)]) == pytest.approx(1.95)
    assert call_overhead([(1, 2.0), (2, 4.0)]) == 0.0
    assert call_overhead([(2, 3.0)]) == 1.5  # one size seen: how the time splits is not known yet


async def test_on_a_shared_cpu_page_one_is_written_and_painted_before_the_other_pages_start(core: Core) -> None:
    from dataclasses import replace

    core.pipeline.config = replace(core.pipeline.config, first_page_first=True)
    core.writer.page_delay_s = 0.3
    record = await core.made(StoryOptions(pages=4, narrate=False))

    assert record.status == JobStatus.done, record.error
    first_prompt, _ = core.illustrator.log[0]
    assert "number 1 " in first_prompt, first_prompt
    later = [at for _, at in core.illustrator.log[1:]]
    assert len(later) == 4 and min(later) >= core.writer.written_at[1]  # the cover and pages 2–4, after page 1's words
    assert min(core.writer.started_at[page] for page in (2, 3, 4)) >= core.writer.written_at[1]  # their words too
    assert all(core.stories.file(record.id, Artifacts.picture(page)) for page in range(0, 5))
