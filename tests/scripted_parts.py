"""Scripted stand-ins for the pipeline's model services, in-process and instant, so the orchestration core (what
runs when, what a resumed book redoes, what an edit changes) is tested in seconds. Each keeps what it was asked
(`calls`) and can be told to fail. The real services are tested over HTTP elsewhere."""

from __future__ import annotations

import asyncio
import base64
import io
import time
from dataclasses import dataclass, field

from PIL import Image

from shared.errors import UpstreamError
from shared.schemas import CaptionResponse, ImageData, ImageGenerationRequest, ImageGenerationResponse, Timings
from webapp.story.options import StoryOptions
from webapp.story.plan import Character, OutlineDraft, OutlinePage, PlanPage, StoryOutline, StoryPlan
from webapp.story.prompts import Brief
from webapp.story.writer import Written

HERO = Character(name="Mia", description="a girl in a red coat")


def png(colour: tuple[int, int, int], size: int = 16) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class ScriptedCaptioner:
    caption_text: str = "A girl in a red coat stands by a lake."
    calls: int = 0

    async def caption(self, image: bytes, *, max_new_tokens: int | None = None) -> CaptionResponse:
        self.calls += 1
        return CaptionResponse(caption=self.caption_text, model="scripted", prompt="", new_tokens=8, timings=Timings())

    async def ready(self) -> bool:
        return True


@dataclass
class ScriptedIllustrator:
    """Paints a flat colour per seed; `fail_pages` fail once each (a service outage), `flag_seeds` come back flagged."""

    fail_scenes: set[str] = field(default_factory=set)
    flag_first: int = 0
    requests: list[ImageGenerationRequest] = field(default_factory=list)
    log: list[tuple[str, float]] = field(default_factory=list)
    name: str = "illustrate"
    model: str = "scripted"  # what the service says made the pictures ("photo-restyle": the offline restyler)

    async def generate(self, request: ImageGenerationRequest) -> ImageGenerationResponse:
        self.requests.append(request)
        self.log.append((request.prompt, time.monotonic()))
        await asyncio.sleep(0)
        for scene in list(self.fail_scenes):
            if scene in request.prompt:
                self.fail_scenes.discard(scene)
                raise UpstreamError("The illustrate service failed: scripted outage.", transient=True)
        flagged = self.flag_first > 0
        self.flag_first -= 1
        seed = request.seed or 0
        image = png((seed % 256, (seed // 256) % 256, 90))
        data = [ImageData(b64_json=base64.b64encode(image).decode(), seed=seed, flagged=flagged)]
        return ImageGenerationResponse(created=0, data=data, model=self.model)

    async def ready(self) -> bool:
        return True


@dataclass
class ScriptedWriter:
    """Writes a numbered story; in German (`de`) it translates by a marker, and a language in `cannot_write` fails
    the way a small model does (the English stays, marked a fallback)."""

    blocked_words: tuple[str, ...] = ()
    cannot_write: set[str] = field(default_factory=set)
    beat_delay_s: float = 0.0
    page_delay_s: float = 0.0  # how long writing a page takes
    calls: list[str] = field(default_factory=list)
    started_at: dict[int, float] = field(default_factory=dict)  # page → when its text was asked for
    written_at: dict[int, float] = field(default_factory=dict)  # page → when its text was done
    outline_finished_at: float | None = None

    def brief(self, caption: str, options: StoryOptions, names: tuple[str, ...]) -> Brief:
        return Brief(options=options, names=names, photo=caption, idea=options.idea)

    async def outline(self, caption: str, options: StoryOptions, *, seed: int = 0, draft: OutlineDraft | None = None, on_beat=None) -> StoryOutline:  # type: ignore[no-untyped-def]
        self.calls.append("outline")
        draft = draft or OutlineDraft(title="The Lantern by the Lake", characters=[HERO])
        for page in range(1, options.pages + 1):
            if page not in draft.beats:
                draft.beats[page] = f"Mia finds clue number {page} by the lake."
                if on_beat is not None:
                    await on_beat(draft, page)
                await asyncio.sleep(self.beat_delay_s)
        self.outline_finished_at = time.monotonic()
        pages = [OutlinePage(beat=draft.beats[page], scene_prompt=f"scene {page}: Mia by the lake") for page in range(1, options.pages + 1)]
        return StoryOutline(title=draft.title or "", cover_prompt="Mia and a lantern", characters=draft.characters or [HERO], pages=pages)

    async def write_page(self, brief: Brief, title: str, beats: dict[int, str], page: int, pages: int, *, seed: int = 0) -> Written:
        self.calls.append(f"write:{page}")
        self.started_at[page] = time.monotonic()
        await asyncio.sleep(self.page_delay_s)
        self.written_at[page] = time.monotonic()
        return Written(f"Page {page}: Mia walked on, seed {seed}.")

    async def translate(self, text: str, language: str, names, *, what: str = "page", seed: int = 0) -> Written:  # type: ignore[no-untyped-def]
        self.calls.append(f"translate:{what}")
        if language in self.cannot_write:
            return Written(text, fallback=True)
        return Written(f"[{language}] {text}")

    async def rewrite_page(self, plan: StoryPlan, options: StoryOptions, caption: str, page: int, instruction: str | None, *, seed: int = 0) -> Written:
        self.calls.append(f"rewrite:{page}")
        return Written(f"Page {page}, told again ({instruction or 'no instruction'}), seed {seed}.")

    async def continue_story(self, plan: StoryPlan, options: StoryOptions, caption: str, more: int, *, seed: int = 0) -> list[PlanPage]:
        self.calls.append(f"continue:{more}")
        first = len(plan.pages) + 1
        return [PlanPage(text=f"Page {page}: and then more.", scene_prompt=f"scene {page}: Mia goes home") for page in range(first, first + more)]
