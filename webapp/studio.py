"""Wiring: settings in, a ready `Studio` out (job store, artifacts, events, service clients, writer, pipeline,
runner). The REST API, the UI and the CLI all drive books through one of these."""

from __future__ import annotations

from dataclasses import dataclass

import openai

from shared.clients import CaptionClient, IllustrateClient, NarrateClient, RetryPolicy
from shared.settings import Profile, Settings
from webapp.jobs.artifacts import ArtifactStore
from webapp.jobs.events import EventBus
from webapp.jobs.narration import PageNarrator
from webapp.jobs.pipeline import PipelineConfig, StoryPipeline
from webapp.jobs.runner import JobRunner
from webapp.jobs.store import SqliteJobStore
from webapp.story.plan import LengthBudget
from webapp.story.writer import StoryWriter

# Picture size and text budget per profile: tiny models paint noise fast; SDXL-Turbo is trained at 512².
_IMAGE_SIZE = {Profile.tiny: 64, Profile.offline: 64, Profile.cpu: 512, Profile.gpu: 1024}
_BUDGET = {Profile.tiny: LengthBudget.compact(), Profile.offline: LengthBudget.small_model()}


@dataclass
class Studio:
    settings: Settings
    store: SqliteJobStore
    artifacts: ArtifactStore
    events: EventBus
    captioner: CaptionClient
    illustrator: IllustrateClient
    narrator: NarrateClient
    llm: openai.AsyncOpenAI
    writer: StoryWriter
    pipeline: StoryPipeline
    runner: JobRunner

    async def aclose(self) -> None:
        await self.runner.shutdown()
        await self.captioner.aclose()
        await self.illustrator.aclose()
        await self.narrator.aclose()
        await self.llm.close()
        self.store.close()


def llm_model_name(settings: Settings) -> str:
    from shared.profiles import model_id_for

    return model_id_for("llm", settings) or "default"


def build_studio(settings: Settings, *, public_url: str) -> Studio:
    """Must be called inside a running event loop (the runner creates tasks)."""
    api_key = settings.api_key.get_secret_value() if settings.api_key else None
    retry = RetryPolicy(attempts=settings.service_retries)
    captioner = CaptionClient(settings.caption_url, api_key=api_key, timeout_s=settings.service_timeout_s, retry=retry)
    illustrator = IllustrateClient(settings.illustrate_url, api_key=api_key, timeout_s=settings.service_timeout_s, retry=retry)
    narrate = NarrateClient(settings.narrate_url, api_key=api_key, timeout_s=settings.service_timeout_s, retry=retry)
    llm_key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else (api_key or "not-needed")
    llm = openai.AsyncOpenAI(base_url=settings.resolved_llm_base_url, api_key=llm_key, timeout=settings.service_timeout_s, max_retries=settings.service_retries)
    budget = _BUDGET.get(settings.profile, LengthBudget())
    writer = StoryWriter(llm, model=llm_model_name(settings), budget=budget, attempts=settings.writer_attempts, blocked_words=tuple(settings.blocked_words))
    store = SqliteJobStore(settings.data_dir / "jobs.sqlite3")
    artifacts = ArtifactStore(settings.data_dir / "artifacts")
    events = EventBus()
    config = PipelineConfig(
        public_url=public_url, image_size=settings.book_image_size or _IMAGE_SIZE[settings.profile], image_steps=4 if settings.profile.tiny_pictures else None,
        reference_strength=settings.reference_strength, max_safety_repaints=settings.max_safety_repaints,
    )
    page_narrator = PageNarrator(narrate, store=store, artifacts=artifacts, voice=settings.narrator_voice)
    pipeline = StoryPipeline(
        store=store, artifacts=artifacts, events=events, captioner=captioner, illustrator=illustrator, writer=writer, config=config, narrator=page_narrator,
    )
    runner = JobRunner(pipeline, settings)
    return Studio(settings, store, artifacts, events, captioner, illustrator, narrate, llm, writer, pipeline, runner)
