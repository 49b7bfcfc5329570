"""An upscale request, checked against the service's limits before any model work, and the plan that runs it.

A request asks for a `scale` (2 to 4) or a target `size`. The model enlarges by its own factor (×4 for
Real-ESRGAN x4) as many times as the target needs, then a Lanczos resize lands on the exact size; a last step of
at most `FINISH_FACTOR` is left to the filter, so 512 px → 2100 px is one model pass and a small resize, not a
second pass to 8192 px. What a request costs is the largest picture the model makes; past
FABULA_MAX_UPSCALE_PIXELS it is refused with a 400 that names the field, the cost and the setting.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from shared.errors import InvalidRequest
from shared.schemas import parse_size
from shared.settings import Settings

MIN_SCALE = 2.0
MAX_SCALE = 4.0
DEFAULT_SCALE = 4.0
FINISH_FACTOR = 1.25


@dataclass(frozen=True)
class UpscalePlan:
    """Model passes, then one resize to `width` × `height`; `model_pixels` is what the model's last pass makes."""

    source: tuple[int, int]
    width: int
    height: int
    passes: int
    model_pixels: int


@dataclass(frozen=True)
class UpscaleJob:
    """One picture to enlarge; jobs with one `batch_key` share a model call (same input size, same plan)."""

    image: Image.Image  # RGB
    plan: UpscalePlan
    weight: int = 1

    @property
    def batch_key(self) -> tuple[str, tuple[int, int], int, int, int]:
        return ("upscale", self.plan.source, self.plan.width, self.plan.height, self.plan.passes)


def target_size(source: tuple[int, int], *, scale: float | None, size: str | None) -> tuple[tuple[int, int], str]:
    """The output size a request asks for, and the field that asked (`scale` or `size`)."""
    if scale is not None and size is not None:
        raise InvalidRequest("Send `scale` or `size`, not both.", param="size")
    if size is not None:
        try:
            width, height = parse_size(size)
        except ValueError as exc:
            raise InvalidRequest(str(exc), param="size") from None
        if width < source[0] or height < source[1]:
            raise InvalidRequest(
                f"`size` {width}x{height} is smaller than the image ({source[0]}x{source[1]}); upscaling only enlarges.", param="size"
            )
        return (width, height), "size"
    factor = DEFAULT_SCALE if scale is None else scale
    if not MIN_SCALE <= factor <= MAX_SCALE:
        raise InvalidRequest(f"`scale` is {factor:g}; it must be between {MIN_SCALE:g} and {MAX_SCALE:g}.", param="scale")
    return (round(source[0] * factor), round(source[1] * factor)), "scale"


def plan_upscale(source: tuple[int, int], target: tuple[int, int], model_scale: int) -> UpscalePlan:
    """How many model passes reach `target` from `source` with a model of `model_scale` (1: the filter alone)."""
    width, height = source
    passes = 0
    if model_scale > 1:
        while max(target[0] / width, target[1] / height) > FINISH_FACTOR:
            width, height, passes = width * model_scale, height * model_scale, passes + 1
    made = width * height if passes else target[0] * target[1]
    return UpscalePlan(source=source, width=target[0], height=target[1], passes=passes, model_pixels=made)


def check_upscale_cost(plan: UpscalePlan, field: str, settings: Settings) -> None:
    """Refuse a plan whose model would make a picture larger than one request may."""
    limit = settings.max_upscale_pixels
    if plan.model_pixels <= limit and plan.width * plan.height <= limit:
        return
    made = max(plan.model_pixels, plan.width * plan.height)
    asked = f"`{field}` ({plan.width}x{plan.height} from {plan.source[0]}x{plan.source[1]})"
    raise InvalidRequest(
        f"{asked} has the upscaler make {made:,} pixels; one request may make at most {limit:,} "
        f"(FABULA_MAX_UPSCALE_PIXELS). Ask for a smaller `scale` or `size`, or send a smaller image.",
        param=field,
    )
