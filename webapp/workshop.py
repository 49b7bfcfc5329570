"""Wiring: settings in, a ready `Workshop` out. The REST API, the UI, the CLI and `fabula worker` all drive books
through one of these.

One machine (the default): SQLite, the local artifact folder, events and books inside this process. With
`FABULA_DATABASE_URL` the jobs live in PostgreSQL; with `FABULA_BROKER_URL` (Redis) books go to Celery workers,
progress travels through Redis pub/sub and the rate limit is kept in Redis, so web replicas hold no state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import openai

from shared.clients import CaptionClient, IllustrateClient, NarrateClient, RetryPolicy
from shared.settings import Profile, Settings
from webapp.jobs.artifacts import ArtifactStore
from webapp.jobs.database import database_url, describe, open_database
from webapp.jobs.disk_guard import DiskGuard
from webapp.jobs.broker_orders import BrokerOrders
from webapp.jobs.dispatch import LeasedDispatch
from webapp.jobs.events import EventBus, LocalEventBus
from webapp.jobs.ledger import JobLedger
from webapp.jobs.narration import PageNarrator
from webapp.jobs.painting import PagePainter, PaintingConfig
from webapp.jobs.pipeline import PipelineConfig, StoryPipeline
from webapp.jobs.schedulers import CeleryScheduler, InProcessScheduler, Scheduler
from webapp.jobs.sql_store import SqlJobStore
from webapp.jobs.store import JobStore
from webapp.jobs.stories import Stories
from webapp.jobs.sweeper import Sweeper
from webapp.story.plan import LengthBudget
from webapp.story.writer import StoryWriter

# Picture size and text budget per profile: tiny models paint noise fast; the offline restyler and SDXL-Turbo work at 512².
_IMAGE_SIZE = {Profile.tiny: 64, Profile.offline: 512, Profile.cpu: 512, Profile.gpu: 1024}
_BUDGET = {Profile.tiny: LengthBudget.compact(), Profile.offline: LengthBudget.small_model()}


@dataclass
class Workshop:
    """Everything one process needs to make books: what it reads and changes them through (`stories`), and what
    runs their work orders (`dispatch`, for the in-process scheduler and `fabula worker`)."""

    settings: Settings
    stories: Stories
    pipeline: StoryPipeline
    dispatch: LeasedDispatch
    required: list[CaptionClient | IllustrateClient]  # the services no book can be made without
    closers: Sequence[Callable[[], Awaitable[None]]] = field(default_factory=list)

    @property
    def store(self) -> JobStore:
        return self.stories.store

    @property
    def artifacts(self) -> ArtifactStore:
        return self.stories.artifacts

    @property
    def events(self) -> EventBus:
        return self.stories.events

    async def services_down(self) -> list[str]:
        """The services no book can be made without (caption, illustrate) that do not answer ready."""
        return [client.name for client in self.required if not await client.ready()]

    async def aclose(self) -> None:
        await self.stories.shutdown()
        for closer in self.closers:
            await closer()
        self.store.close()


def _read_aloud(ledger: JobLedger, job_id: str, page: int) -> None:
    if page > 0:  # page 0 is the title, which no page waits for
        ledger.piece_saved(job_id, page, f"Page {page} read aloud.")


def llm_model_name(settings: Settings) -> str:
    from shared.profiles import model_id_for

    return model_id_for("llm", settings) or "default"


def event_bus(settings: Settings) -> EventBus:
    if settings.broker_url and settings.broker_url.startswith(("redis://", "rediss://")):
        from webapp.jobs.redis_events import RedisEventBus

        return RedisEventBus(settings.broker_url)
    return LocalEventBus()


def build_workshop(settings: Settings, *, public_url: str, scheduler: Scheduler | None = None) -> Workshop:
    """Must be called inside a running event loop (the in-process scheduler creates tasks). `scheduler` is for
    tests and tools; otherwise FABULA_BROKER_URL chooses Celery, and its absence this process."""
    api_key = settings.api_key.get_secret_value() if settings.api_key else None
    retry = RetryPolicy(attempts=settings.service_retries)
    captioner = CaptionClient(settings.caption_url, api_key=api_key, timeout_s=settings.service_timeout_s, retry=retry)
    illustrator = IllustrateClient(settings.illustrate_url, api_key=api_key, timeout_s=settings.service_timeout_s, retry=retry)
    narrate = NarrateClient(settings.narrate_url, api_key=api_key, timeout_s=settings.service_timeout_s, retry=retry)
    llm_key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else (api_key or "not-needed")
    llm = openai.AsyncOpenAI(base_url=settings.resolved_llm_base_url, api_key=llm_key, timeout=settings.service_timeout_s, max_retries=settings.service_retries)
    budget = _BUDGET.get(settings.profile, LengthBudget())
    writer = StoryWriter(
        llm, model=llm_model_name(settings), budget=budget, attempts=settings.writer_attempts, blocked_words=tuple(settings.blocked_words),
        audience_words=settings.audience_words,
    )
    guard = DiskGuard(settings.data_dir)
    url = database_url(settings)
    store = SqlJobStore(open_database(settings), where=describe(url), guard=guard if url.startswith("sqlite") else None)
    artifacts = ArtifactStore(settings.data_dir / "artifacts", guard=guard)
    events = event_bus(settings)
    ledger = JobLedger(store, events, artifacts)
    painting = PaintingConfig(
        image_size=settings.book_image_size or _IMAGE_SIZE[settings.profile], image_steps=4 if settings.profile.tiny_pictures else None,
        reference_strength=settings.reference_strength, max_safety_repaints=settings.max_safety_repaints,
    )
    pipeline = StoryPipeline(
        ledger=ledger, artifacts=artifacts, captioner=captioner, writer=writer, painter=PagePainter(illustrator, artifacts, ledger, painting),
        narrator=PageNarrator(narrate, store=store, artifacts=artifacts, voice=settings.narrator_voice, on_saved=partial(_read_aloud, ledger)),
        # On a CPU profile the pictures share the processor with the writer: page 1 first, then the others.
        config=PipelineConfig(public_url=public_url, pictures_per_call=settings.max_batch_size, first_page_first=settings.profile != Profile.gpu),
    )
    dispatch = LeasedDispatch(store, pipeline.run, lease_s=settings.job_lease_s)
    closers = [captioner.aclose, illustrator.aclose, narrate.aclose, llm.close, events.aclose]
    if scheduler is None:
        if settings.broker_url:
            from webapp.jobs.celery_app import celery_app

            scheduler = CeleryScheduler(celery_app(settings))
            sweeper = Sweeper(store, scheduler, BrokerOrders(settings.broker_url), period_s=settings.job_lease_s)
            sweeper.start()
            closers.insert(0, sweeper.aclose)
        else:
            scheduler = InProcessScheduler(dispatch)
    stories = Stories(store=store, artifacts=artifacts, events=events, scheduler=scheduler, settings=settings)
    return Workshop(settings, stories, pipeline, dispatch, [captioner, illustrator], closers)
