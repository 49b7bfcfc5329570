"""What the illustration service asks of an engine (`PictureEngine`), and the parts every engine does the same way.

Two engines meet this surface: `engine.IllustrateEngine` paints from the prompt with SDXL, and
`restyle.RestyleEngine` restyles the request's photo with OpenCV (the offline profile). Both pass every picture
through the safety classifier with `screened` and hand out their print upscaler with `loaded_upscaler`.
"""

from __future__ import annotations

import logging
from typing import Protocol

from PIL import Image

from services.illustrate.picture_requests import GenerationDefaults, GenerationJob, PaintedImage
from services.illustrate.placeholder import calm_placeholder
from services.illustrate.prompt_window import PromptWindow
from services.illustrate.safety import SafetyChecker
from services.illustrate.upscaler import Upscaler
from shared.errors import ModelUnavailable
from shared.model_holder import EngineInfo

logger = logging.getLogger(__name__)


class PictureEngine(Protocol):
    """The engine the service's routes and batch function use."""

    model_id: str
    device: str
    defaults: GenerationDefaults
    safety: SafetyChecker | None

    @property
    def prompt_window(self) -> PromptWindow | None:
        """How many tokens the text encoders read (None: the engine reads every word)."""
        ...

    @property
    def restyles_photo(self) -> bool:
        """True when every picture is the request's `reference_image` restyled, so a request must carry one."""
        ...

    def info(self) -> EngineInfo: ...

    def paint(self, batch: list[GenerationJob]) -> list[list[PaintedImage]]: ...

    def generate(self, batch: list[GenerationJob]) -> list[list[Image.Image]]: ...

    def require_likeness(self) -> None:
        """Raise `ModelUnavailable` unless a reference photo can be followed: called before queueing such a job."""
        ...

    def require_upscaler(self) -> Upscaler: ...

    def warm_up(self) -> None: ...


def screened(images: list[Image.Image], safety: SafetyChecker | None) -> list[PaintedImage]:
    """Each picture as it may leave the engine: a picture the classifier flags becomes the calm placeholder of its
    size (its pixels never leave), marked `flagged`. Without a classifier every picture passes."""
    flags = safety.check(images) if safety is not None else [False] * len(images)
    if any(flags):
        logger.warning("the safety classifier flagged pictures; placeholders sent instead", extra={"fields": {
            "flagged": sum(flags), "pictures": len(flags)}})
    return [
        PaintedImage(calm_placeholder(*image.size), flagged=True) if flagged else PaintedImage(image)
        for image, flagged in zip(images, flags, strict=True)
    ]


def per_job(batch: list[GenerationJob], painted: list[PaintedImage]) -> list[list[PaintedImage]]:
    """The batch's pictures, in order, split into each job's `count`."""
    results: list[list[PaintedImage]] = []
    offset = 0
    for job in batch:
        results.append(painted[offset : offset + job.count])
        offset += job.count
    return results


def loaded_upscaler(upscaler: Upscaler | ModelUnavailable | None) -> Upscaler:
    """The print upscaler, or the `ModelUnavailable` that says why there is none."""
    if isinstance(upscaler, Upscaler):
        return upscaler
    raise upscaler or ModelUnavailable("This illustration service was started without an upscaler.", param="FABULA_UPSCALE_MODEL")
