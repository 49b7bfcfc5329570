"""Check an image request against the service's limits and turn it into a `GenerationJob`, before any model work.

Every error names the field (`param`) and the rule, with the setting that holds the limit, so a caller can fix
the request without reading the code.
"""

from __future__ import annotations

import base64
import binascii
import math
import secrets

from PIL import Image

from services.illustrate.engine import GenerationDefaults, GenerationJob
from shared.bodies import BodyLimit, parse_json_object, validate_body
from shared.errors import InvalidRequest, PayloadTooLarge
from shared.images import load_image
from shared.schemas import ImageGenerationRequest, parse_size
from shared.settings import Profile, Settings

SUPPORTED_RESPONSE_FORMAT = "b64_json"
# Three text fields, each at worst 12 bytes per character in JSON (an escaped surrogate pair), plus the rest.
_BYTES_PER_PROMPT_CHARACTER = 3 * 12
_BODY_OVERHEAD_BYTES = 64 * 1024


# What one request may cost (width × height × steps × n) when FABULA_MAX_PIXEL_STEPS is not set: on the tiny
# pictures' profiles a request finishes in seconds on a CPU (128² × 8 steps × 4 images); on cpu and gpu,
# SDXL at its native 1024² with 40 steps and four images.
DEFAULT_PIXEL_STEPS: dict[Profile, int] = {
    Profile.tiny: 128 * 128 * 8 * 4,
    Profile.offline: 128 * 128 * 8 * 4,
    Profile.cpu: 1024 * 1024 * 40 * 4,
    Profile.gpu: 1024 * 1024 * 40 * 4,
}


def max_body_bytes(settings: Settings) -> int:
    """The text fields at their limits, a `reference_image` upload at its limit in base64, and the rest."""
    reference_image = -(-settings.max_upload_bytes // 3) * 4
    return settings.max_prompt_chars * _BYTES_PER_PROMPT_CHARACTER + reference_image + _BODY_OVERHEAD_BYTES


def generation_body_limit(settings: Settings) -> BodyLimit:
    return BodyLimit(
        max_bytes=max_body_bytes(settings), param="body",
        rule=f"the limit is {max_body_bytes(settings):,} bytes (it follows FABULA_MAX_PROMPT_CHARS and FABULA_MAX_UPLOAD_BYTES)",
    )


def parse_generation_request(body: bytes, settings: Settings) -> ImageGenerationRequest:
    """Decode the JSON body into the wire model; errors name `body` or the field at fault."""
    if not body.strip():
        raise InvalidRequest("The request body is empty; send a JSON object with at least `prompt`.", param="body")
    data = parse_json_object(body)
    response_format = data.get("response_format")
    if response_format is not None and response_format != SUPPORTED_RESPONSE_FORMAT:
        raise InvalidRequest(
            f"`response_format` must be `{SUPPORTED_RESPONSE_FORMAT}` (images are returned inline as base64 PNG), "
            f"not {response_format!r}.",
            param="response_format",
        )
    return validate_body(ImageGenerationRequest, data)


def pixel_step_limit(settings: Settings) -> int:
    """FABULA_MAX_PIXEL_STEPS, or the profile's default."""
    return settings.max_pixel_steps or DEFAULT_PIXEL_STEPS[settings.profile]


def check_cost(job: GenerationJob, settings: Settings) -> None:
    """Refuse a request that would hold the model longer than one request may, saying what to ask for instead."""
    limit = pixel_step_limit(settings)
    cost = job.width * job.height * job.steps * job.count
    if cost <= limit:
        return
    images = "image" if job.count == 1 else "images"
    largest = _largest_square_side(limit, job.steps * job.count, settings)
    if largest is not None:
        advice = f"Ask for `size` {largest}x{largest} or smaller at {job.steps} steps, or for fewer steps or images."
    else:
        low = settings.min_image_size
        steps = max(1, limit // (low * low * job.count))
        advice = f"Ask for `size` {low}x{low} with at most {steps} `num_inference_steps`, or for fewer images."
    raise InvalidRequest(
        f"`size` {job.width}x{job.height} × {job.steps} steps × {job.count} {images} is {cost:,} pixel-steps; one request "
        f"may cost at most {limit:,} (FABULA_MAX_PIXEL_STEPS, width × height × steps × n). {advice}",
        param="size",
    )


def _largest_square_side(limit: int, steps_times_images: int, settings: Settings) -> int | None:
    side = int(math.isqrt(limit // steps_times_images)) // 8 * 8
    side = min(side, settings.max_image_size // 8 * 8)
    return side if side >= settings.min_image_size else None


def check_limits(request: ImageGenerationRequest, settings: Settings) -> tuple[int, int] | None:
    """Raise `InvalidRequest` for the first broken limit; returns the requested size, or None when left open.

    A `size` the client did not send (not in `model_fields_set`) is left open, whatever the schema's default
    says, so the loaded model's native size applies: 64×64 for the tiny pictures, 512² for SDXL-Turbo,
    1024² for SDXL base.
    """
    for field in ("prompt", "negative_prompt", "style"):
        text = getattr(request, field)
        if text is not None and len(text) > settings.max_prompt_chars:
            raise InvalidRequest(
                f"`{field}` is {len(text):,} characters; the limit is {settings.max_prompt_chars:,} (FABULA_MAX_PROMPT_CHARS).",
                param=field,
            )
    if not request.prompt.strip():
        raise InvalidRequest("`prompt` must contain some text, not only spaces.", param="prompt")
    if request.n > settings.max_images_per_request:
        raise InvalidRequest(
            f"`n` is {request.n}; at most {settings.max_images_per_request} images per request (FABULA_MAX_IMAGES_PER_REQUEST).",
            param="n",
        )
    steps = request.num_inference_steps
    if steps is not None and steps > settings.max_inference_steps:
        raise InvalidRequest(
            f"`num_inference_steps` is {steps}; the limit is {settings.max_inference_steps} (FABULA_MAX_INFERENCE_STEPS).",
            param="num_inference_steps",
        )
    if request.refiner_start is not None and request.refiner_start <= 0.0:
        raise InvalidRequest(
            "`refiner_start` must be greater than 0 (the base paints the start of every picture) and at most 1 (base only).",
            param="refiner_start",
        )
    if "size" not in request.model_fields_set:
        return None
    return check_size(request.size, settings)


def check_size(size: str, settings: Settings) -> tuple[int, int]:
    try:
        width, height = parse_size(size)
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="size") from None
    if width % 8 or height % 8:
        raise InvalidRequest(f"`size` is {width}x{height}; width and height must be multiples of 8.", param="size")
    low, high = settings.min_image_size, settings.max_image_size
    if not (low <= width <= high and low <= height <= high):
        raise InvalidRequest(
            f"`size` is {width}x{height}; width and height must be between {low} and {high} pixels "
            f"(FABULA_MIN_IMAGE_SIZE, FABULA_MAX_IMAGE_SIZE).",
            param="size",
        )
    return width, height


def decode_reference(reference_image: str | None, settings: Settings) -> Image.Image | None:
    """`reference_image` (base64 PNG, JPEG or WebP, or a `data:` URL) under the upload rules, or a 400 naming it."""
    if reference_image is None or not reference_image.strip():
        return None
    text = reference_image.strip()
    if text.startswith("data:"):
        header, _, text = text.partition(",")
        if ";base64" not in header:
            raise InvalidRequest("`reference_image` as a `data:` URL must be base64 (`data:image/png;base64,...`).", param="reference_image")
    text = "".join(text.split())  # base64 wrapped over lines (as `base64` writes it) is still base64
    if len(text) > 4 * (settings.max_upload_bytes // 3 + 1):
        raise PayloadTooLarge(
            f"`reference_image` is larger than the upload limit of {settings.max_upload_bytes:,} bytes (FABULA_MAX_UPLOAD_BYTES).", param="reference_image"
        )
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("`reference_image` is not valid base64; send the photo's bytes base64-encoded.", param="reference_image") from None
    image = load_image(data, max_bytes=settings.max_upload_bytes, max_pixels=settings.max_image_pixels, param="reference_image")
    return image.convert("RGB")


def build_job(
    request: ImageGenerationRequest, size: tuple[int, int] | None, defaults: GenerationDefaults, *, reference: Image.Image | None = None
) -> GenerationJob:
    """Fill what the request leaves open from the loaded model's defaults; draw a seed when none is given."""
    width, height = size or (defaults.width, defaults.height)
    refiner_start = defaults.refiner_start if request.refiner_start is None else request.refiner_start
    prompt = request.prompt.strip()
    if request.style and request.style.strip():
        prompt = f"{prompt}, {request.style.strip()}"
    return GenerationJob(
        prompt=prompt,
        negative_prompt=request.negative_prompt,
        count=request.n,
        width=width,
        height=height,
        steps=request.num_inference_steps or defaults.steps,
        guidance_scale=defaults.guidance_scale if request.guidance_scale is None else request.guidance_scale,
        refiner_start=refiner_start if defaults.has_refiner else 1.0,
        seed=secrets.randbelow(2**32) if request.seed is None else request.seed,
        reference=reference,
        reference_strength=defaults.reference_strength if request.reference_strength is None else request.reference_strength,
    )
