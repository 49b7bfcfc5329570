"""Check an image request against the service's limits and turn it into a `GenerationJob`, before any model work.

Every error names the field (`param`) and the rule, with the setting that holds the limit, so a caller can fix
the request without reading the code.
"""

from __future__ import annotations

import json
import secrets

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from services.illustrate.engine import GenerationDefaults, GenerationJob
from shared.errors import InvalidRequest, PayloadTooLarge
from shared.schemas import ImageGenerationRequest, parse_size
from shared.settings import Settings

SUPPORTED_RESPONSE_FORMAT = "b64_json"
# Three text fields, each at worst 12 bytes per character in JSON (an escaped surrogate pair), plus the rest.
_BYTES_PER_PROMPT_CHARACTER = 3 * 12
_BODY_OVERHEAD_BYTES = 64 * 1024


def max_body_bytes(settings: Settings) -> int:
    return settings.max_prompt_chars * _BYTES_PER_PROMPT_CHARACTER + _BODY_OVERHEAD_BYTES


def parse_generation_request(body: bytes, settings: Settings) -> ImageGenerationRequest:
    """Decode the JSON body into the wire model; errors name `body` or the field at fault."""
    if len(body) > max_body_bytes(settings):
        raise PayloadTooLarge(
            f"The request body is {len(body):,} bytes; the limit is {max_body_bytes(settings):,} bytes "
            f"(it follows FABULA_MAX_PROMPT_CHARS).",
            param="body",
        )
    if not body.strip():
        raise InvalidRequest("The request body is empty; send a JSON object with at least `prompt`.", param="body")
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise InvalidRequest(f"The request body is not valid JSON{where}; send a JSON object.", param="body") from None
    if not isinstance(data, dict):
        raise InvalidRequest(f"The request body must be a JSON object, not a JSON {type(data).__name__}.", param="body")
    response_format = data.get("response_format")
    if response_format is not None and response_format != SUPPORTED_RESPONSE_FORMAT:
        raise InvalidRequest(
            f"`response_format` must be `{SUPPORTED_RESPONSE_FORMAT}` (images are returned inline as base64 PNG), "
            f"not {response_format!r}.",
            param="response_format",
        )
    try:
        return ImageGenerationRequest.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
        ) from None


def check_limits(request: ImageGenerationRequest, settings: Settings) -> tuple[int, int] | None:
    """Raise `InvalidRequest` for the first broken limit; returns the requested size, or None when left open."""
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


def build_job(
    request: ImageGenerationRequest, size: tuple[int, int] | None, defaults: GenerationDefaults
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
    )
