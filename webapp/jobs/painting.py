"""Painting one page's picture: the scene in the book's style, the photo as the likeness reference where its
subject appears (and, for the offline profile's restyler, as what every picture is made from), checked by the
image service's safety classifier, saved once it passes.

A flagged picture is painted again with the next seeds (`seeds.seed_for`); after `max_safety_repaints` it is
replaced by the service's calm placeholder and the page is marked, so a reader knows why.

A book with a print size has each picture upscaled the moment it is saved (beside the other pictures, the words
and the narration), to 300 dpi at the widest its page can print it. The print copy is a separate artifact: the
reader and the EPUB keep the screen-sized picture. An upscale that fails is logged and leaves the page at its
painted size; the book's print check then says that page falls short.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
from dataclasses import dataclass

from PIL import Image

from shared.clients import IllustrateClient
from shared.errors import FabulaError, UpstreamError
from shared.schemas import ImageData, ImageGenerationRequest
from webapp.book.print_sizes import PrintSize, paper_for, print_picture_width
from webapp.jobs.artifacts import ArtifactStore
from webapp.jobs.ledger import JobLedger
from webapp.jobs.progress import COVER, Artifacts, PaintedPicture, Steps
from webapp.jobs.safety_metrics import SAFETY
from webapp.jobs.seeds import seed_for
from webapp.story.options import StoryOptions
from webapp.story.picture_prompt import picture_prompt
from webapp.story.plan import Character

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PaintingConfig:
    image_size: int = 1024
    image_steps: int | None = None
    max_concurrent_images: int = 25  # a whole 24-page book and its cover in flight at once
    reference_strength: float = 0.6  # the book's default; a book's own option wins
    max_safety_repaints: int = 2


class PagePainter:
    def __init__(self, illustrator: IllustrateClient, artifacts: ArtifactStore, ledger: JobLedger, config: PaintingConfig) -> None:
        self.illustrator = illustrator
        self.artifacts = artifacts
        self.ledger = ledger
        self.store = ledger.store
        self.config = config
        self._slots: asyncio.Semaphore | None = None

    async def paint(self, job_id: str, scene: str, characters: list[Character], options: StoryOptions, page: int, seed: int) -> None:
        """Paint the page's picture unless it is saved already; then its print copy, when the book has a print size."""
        if not self.artifacts.exists(job_id, Artifacts.picture(page)):
            await self._paint(job_id, scene, characters, options, page, seed)
        if options.print is not PrintSize.screen and not self.artifacts.exists(job_id, Artifacts.print_picture(page)):
            await self._upscale(job_id, page, options.print)

    async def _paint(self, job_id: str, scene: str, characters: list[Character], options: StoryOptions, page: int, seed: int) -> None:
        picture = picture_prompt(scene, [(character.name, character.description) for character in characters], options.style)
        strength = self.config.reference_strength if options.reference_strength is None else options.reference_strength
        reference = self._photo(job_id)
        if not self._shows_subject(scene, characters, page):
            strength = 0.0
        first_try = self.store.progress(job_id).repaints(page) * (self.config.max_safety_repaints + 1)
        for attempt in range(self.config.max_safety_repaints + 1):
            size = self.config.image_size
            request = ImageGenerationRequest(
                prompt=picture.prompt, negative_prompt=picture.negative_prompt, n=1, size=f"{size}x{size}",
                num_inference_steps=self.config.image_steps, seed=seed_for(seed, first_try + attempt), response_format="b64_json",
                reference_image=reference, reference_strength=strength if reference else None,
            )
            image, model = await self._one(request)
            if not image.flagged:
                break
            logger.warning("picture flagged by the safety classifier", extra={"fields": {"page": page, "attempt": attempt + 1, "seed": image.seed}})
            SAFETY.flagged.inc()
        if image.flagged:
            logger.warning("flagged picture replaced by a placeholder", extra={"fields": {"page": page}})
            SAFETY.replaced.inc()
        self.artifacts.write(job_id, Artifacts.picture(page), base64.b64decode(image.b64_json))
        guided = reference is not None and strength > 0
        painted = PaintedPicture(seed=image.seed, prompt=picture.prompt, reference=guided, flagged=image.flagged, repaints=attempt, model=model)
        self.store.save_step(job_id, Steps.picture(page), painted.model_dump())
        self.ledger.picture_saved(job_id, page)

    async def _upscale(self, job_id: str, page: int, size: PrintSize) -> None:
        painted = self.artifacts.read(job_id, Artifacts.picture(page))
        with Image.open(io.BytesIO(painted)) as saved:  # the service's own PNG, saved by this painter
            width, height = saved.size
        wanted = print_picture_width(paper_for(size))
        if width >= wanted:
            return  # already 300 dpi at its widest: the book prints the painted picture
        target = f"{wanted}x{max(1, round(height * wanted / width))}"
        try:
            if self._slots is None:
                self._slots = asyncio.Semaphore(self.config.max_concurrent_images)
            async with self._slots:
                response = await self.illustrator.upscale(painted, size=target)
        except FabulaError as exc:
            logger.warning("picture not upscaled for print", extra={"fields": {"page": page, "size": target, "error": exc.message}})
            return
        if not response.data:
            raise UpstreamError("The image service answered an upscale without an image.", transient=True)
        self.artifacts.write(job_id, Artifacts.print_picture(page), base64.b64decode(response.data[0].b64_json))

    async def _one(self, request: ImageGenerationRequest) -> tuple[ImageData, str | None]:
        """The picture, and the model the service says made it."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.config.max_concurrent_images)
        async with self._slots:
            response = await self.illustrator.generate(request)
        if not response.data:
            raise UpstreamError("The image service answered without an image.", transient=True)
        return response.data[0], response.model

    def _photo(self, job_id: str) -> str | None:
        """The uploaded photo, sent with every picture: a painter with likeness follows it where `_shows_subject`
        (at the strength asked for, else at 0, where it is ignored); the offline restyler makes every page from it."""
        if not self.artifacts.exists(job_id, Artifacts.PHOTO):
            return None
        return base64.b64encode(self.artifacts.read(job_id, Artifacts.PHOTO)).decode()

    @staticmethod
    def _shows_subject(scene: str, characters: list[Character], page: int) -> bool:
        """The cover, the photo's own scene (page 1) and every page whose scene names the main character (the
        photo's subject: the plan's first character)."""
        subject = characters[0].name.lower() if characters else ""
        return page in (COVER, 1) or not subject or subject in scene.lower()
