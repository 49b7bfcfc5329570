"""Picture requests: what one request asks the engine for (`GenerationJob`), what it gets back (`PaintedImage`),
and the defaults a loaded model fills in (`GenerationDefaults`, `default_sampling`).

Jobs with the same `batch_key` share one pipeline call. Image i of a job with seed s is drawn from its own
generator seeded s + i, so a seed gives the same picture alone or inside a batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image

from services.illustrate.likeness import reference_digest
from shared.settings import Settings

TURBO_STEPS = 4
TURBO_GUIDANCE_SCALE = 0.0
STANDARD_STEPS = 30
STANDARD_GUIDANCE_SCALE = 5.0
DEFAULT_REFERENCE_STRENGTH: float = Settings.model_fields["reference_strength"].default


@dataclass(frozen=True)
class GenerationJob:
    """One request's worth of images; jobs with the same `batch_key` can share a pipeline call.

    `reference` is a photo the pictures should resemble, weighed by `reference_strength` (0 to 1; 0 is the same
    as no photo). Jobs compare by the photo's pixel digest (`reference_digest`), not by the image object.
    """

    prompt: str
    negative_prompt: str | None
    count: int
    width: int
    height: int
    steps: int
    guidance_scale: float
    refiner_start: float
    seed: int
    reference: Image.Image | None = field(default=None, compare=False, repr=False)
    reference_strength: float = DEFAULT_REFERENCE_STRENGTH
    reference_digest: str | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.reference_strength <= 1.0:
            raise ValueError(f"`reference_strength` must be between 0 and 1 but is {self.reference_strength}")
        if self.reference is not None:
            object.__setattr__(self, "reference_digest", reference_digest(self.reference))

    @property
    def likeness_strength(self) -> float:
        """The adapter scale this job paints at: 0 without a photo."""
        return self.reference_strength if self.reference is not None else 0.0

    def keyed_reference(self) -> tuple[str, Image.Image] | None:
        """The photo with its pixel digest (what likeness embeddings are cached by), or None without a photo."""
        if self.reference is None or self.reference_digest is None:
            return None
        return self.reference_digest, self.reference

    @property
    def batch_key(self) -> tuple[int, int, int, float, float, bool, float]:
        # A missing negative prompt means zeroed negative embeddings for SDXL base, an empty one does not,
        # so the two never share a call (that would change the picture a seed gives). The adapter scale is one
        # number per call, so it is part of the key; different photos at one strength still share a call.
        return (
            self.width, self.height, self.steps, self.guidance_scale, self.refiner_start, self.negative_prompt is None,
            self.likeness_strength,
        )

    @property
    def seeds(self) -> list[int]:
        return [self.seed + index for index in range(self.count)]


@dataclass(frozen=True)
class GenerationDefaults:
    has_refiner: bool
    steps: int
    guidance_scale: float
    refiner_start: float
    width: int
    height: int
    reference_strength: float = DEFAULT_REFERENCE_STRENGTH


@dataclass(frozen=True)
class PaintedImage:
    """One painted picture and whether the safety classifier flagged it (then `image` is the calm placeholder)."""

    image: Image.Image
    flagged: bool = False


def default_sampling(model_id: str, has_refiner: bool, settings: Settings) -> tuple[int, float]:
    """Steps and guidance when the request and settings leave them open.

    Adversarially distilled models (SDXL-Turbo) are trained for 1–4 steps without classifier-free guidance;
    SDXL base wants ~30 guided steps.
    """
    turbo = not has_refiner and "turbo" in model_id.lower()
    steps = settings.default_inference_steps or (TURBO_STEPS if turbo else STANDARD_STEPS)
    guidance = settings.default_guidance_scale
    if guidance is None:
        guidance = TURBO_GUIDANCE_SCALE if turbo else STANDARD_GUIDANCE_SCALE
    return steps, guidance
