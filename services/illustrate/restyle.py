"""The offline profile's pictures: the reader's photo restyled for each page with OpenCV, no model weights.

No diffusion weights can be had offline, and a random tiny SDXL paints coloured noise, so this engine does not
paint from the text at all: every picture is the request's `reference_image`, framed for the page (a zoom, a
slight turn, sometimes mirrored: `restyle_scene.framed`), graded in the colour mood of the scene's words
(`restyle_scene.scene_mood`), and redrawn in the book's style (`restyle_styles.preset_for`: watercolour,
comic, pencil, paper cut...). A request without a photo is refused (`PHOTO_REQUIRED`).

Picture i of a request with seed s is drawn from a generator seeded by s + i and the prompt, so the same seed,
prompt and photo give the same picture, alone or in a batch, and another seed or scene gives another framing
and mood. The request's steps, guidance, refiner start, negative prompt and reference strength do not apply.
Every picture passes the safety classifier like a painted one (`picture_engine.screened`).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, field
from typing import ClassVar

import cv2
import numpy as np
from PIL import Image

from services.illustrate.picture_engine import loaded_upscaler, per_job, screened
from services.illustrate.picture_requests import GenerationDefaults, GenerationJob, PaintedImage
from services.illustrate.prompt_window import PromptWindow
from services.illustrate.restyle_scene import framed, graded, scene_mood, vignetted
from services.illustrate.restyle_styles import PRESETS, preset_for
from services.illustrate.safety import SafetyChecker
from services.illustrate.upscaler import Upscaler
from shared.errors import InvalidRequest, ModelUnavailable
from shared.model_holder import EngineInfo
from shared.profiles import RESTYLE
from shared.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_SIZE = 512
# Pictures are restyled at most this many pixels a side, then resized to the size asked for, so a 2048² request
# costs what a 1024² one does (about four times a 512² one).
WORK_MAX_SIDE = 1024
WARM_UP_SIZE = 64
WARM_UP_GREY = 128
PHOTO_REQUIRED = (
    "This illustration service makes each picture by restyling a photo (the offline profile has no painting model), "
    "so every request needs `reference_image`: the photo, base64-encoded (PNG, JPEG or WebP, or a `data:` URL)."
)


@dataclass
class RestyleEngine:
    """The photo restyler behind the service's picture routes (`picture_engine.PictureEngine`)."""

    defaults: GenerationDefaults
    safety: SafetyChecker | None = None
    upscaler: Upscaler | ModelUnavailable | None = None
    model_id: str = RESTYLE
    device: str = "cpu"
    restyles_photo: ClassVar[bool] = True
    prompt_window: ClassVar[PromptWindow | None] = None  # no text encoder: no word of a prompt goes unread
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(
        cls, *, settings: Settings, safety: SafetyChecker | None = None, upscaler: Upscaler | ModelUnavailable | None = None
    ) -> RestyleEngine:
        """The restyler with its safety classifier (pass one whenever `settings.safety_checker` is on) and its print
        upscaler (or the `ModelUnavailable` that loading it raised); warmed up, so a broken OpenCV fails here."""
        size = min(max(DEFAULT_SIZE, settings.min_image_size), settings.max_image_size)
        defaults = GenerationDefaults(
            has_refiner=False, steps=1, guidance_scale=0.0, refiner_start=1.0, width=size, height=size,
            reference_strength=settings.reference_strength,
        )
        engine = cls(defaults=defaults, safety=safety, upscaler=upscaler)
        engine.warm_up()
        logger.info("photo restyler ready", extra={"fields": engine.info().model_dump()})
        return engine

    def info(self) -> EngineInfo:
        return EngineInfo(
            model=self.model_id,
            device=self.device,
            dtype="uint8",
            extra={
                "pictures": "the request's photo restyled (OpenCV, no model weights)",
                "styles": ", ".join(PRESETS),
                "default_size": f"{self.defaults.width}x{self.defaults.height}",
                "likeness": True,
                "safety_checker": self.safety is not None,
                "upscale_model": self.upscaler.model_id if isinstance(self.upscaler, Upscaler) else None,
                "upscale_architecture": self.upscaler.architecture if isinstance(self.upscaler, Upscaler) else None,
            },
        )

    def warm_up(self) -> None:
        """Every preset once on a small grey photo."""
        grey = Image.new("RGB", (WARM_UP_SIZE, WARM_UP_SIZE), (WARM_UP_GREY,) * 3)
        for style in PRESETS:
            restyled(grey, prompt=style, seed=0, size=(WARM_UP_SIZE, WARM_UP_SIZE))

    def require_likeness(self) -> None:
        """Following the photo is all this engine does: every reference is accepted."""

    def require_upscaler(self) -> Upscaler:
        return loaded_upscaler(self.upscaler)

    def generate(self, batch: list[GenerationJob]) -> list[list[Image.Image]]:
        return [[painted.image for painted in pictures] for pictures in self.paint(batch)]

    def paint(self, batch: list[GenerationJob]) -> list[list[PaintedImage]]:
        """Each job's pictures (one per seed), screened by the safety classifier; flagged ones are the calm placeholder."""
        for job in batch:
            if job.reference is None:
                raise InvalidRequest(PHOTO_REQUIRED, param="reference_image")
        pictures = [
            restyled(job.reference, prompt=job.prompt, seed=seed, size=(job.width, job.height))
            for job in batch if job.reference is not None
            for seed in job.seeds
        ]
        with self._lock:  # the classifier checks one batch at a time
            painted = screened(pictures, self.safety)
        return per_job(batch, painted)


def restyled(photo: Image.Image, *, prompt: str, seed: int, size: tuple[int, int]) -> Image.Image:
    """`photo` restyled for one picture of `size` (width, height): framed by `seed` and the prompt, graded in the
    scene's mood, drawn in the prompt's style, vignetted."""
    width, height = size
    work = _work_size(width, height)
    rng = np.random.default_rng([seed, _prompt_key(prompt)])
    preset = preset_for(prompt)
    picture = framed(cv2.cvtColor(np.asarray(photo.convert("RGB")), cv2.COLOR_RGB2BGR), work, rng)
    if preset.coloured:
        picture = graded(picture, scene_mood(prompt))
    picture = preset.look(picture, rng)
    if preset.coloured:
        picture = vignetted(picture, rng)
    if work != size:
        picture = cv2.resize(picture, size, interpolation=cv2.INTER_NEAREST if preset.blocky else cv2.INTER_CUBIC)
    return Image.fromarray(cv2.cvtColor(picture, cv2.COLOR_BGR2RGB))


def _work_size(width: int, height: int) -> tuple[int, int]:
    shrink = min(1.0, WORK_MAX_SIDE / max(width, height))
    return max(1, round(width * shrink)), max(1, round(height * shrink))


def _prompt_key(prompt: str) -> int:
    """A stable number for the prompt (Python's `hash` of a string changes from one process to the next)."""
    return int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "little")
