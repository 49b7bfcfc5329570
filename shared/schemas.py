"""The wire between the web app and the caption and illustrate services (pydantic models).

Limits that depend on settings (sizes, steps, n) are checked by the services before any model work;
these models hold the shapes and the limits that never change.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field


class Timings(BaseModel):
    queue_seconds: float = 0.0
    inference_seconds: float = 0.0
    total_seconds: float = 0.0


class CaptionResponse(BaseModel):
    caption: str
    model: str
    prompt: str
    new_tokens: int
    timings: Timings


class ImageGenerationRequest(BaseModel):
    """OpenAI Images API shape (`prompt`, `n`, `size`, `response_format`) plus Fabula's extras."""

    prompt: str = Field(min_length=1, description="What to paint.")
    n: int = Field(default=1, ge=1, description="How many images (limit: FABULA_MAX_IMAGES_PER_REQUEST).")
    size: str = Field(default="1024x1024", description="WIDTHxHEIGHT, each a multiple of 8 within the service's limits.")
    response_format: Literal["b64_json"] = Field(default="b64_json", description="Only `b64_json`: images travel inline.")
    model: str | None = Field(default=None, description="Ignored: the service paints with the model it loaded.")
    quality: str | None = None
    style: str | None = Field(
        default=None,
        description=(
            "The book's style preset (an id such as `watercolor`, `comic`, `line-art`), appended to the prompt: diffusion "
            "models read the style from the prompt; the offline restyler picks its look by it (an unknown one: watercolor)."
        ),
    )
    user: str | None = None
    negative_prompt: str | None = None
    num_inference_steps: int | None = Field(default=None, ge=1)
    guidance_scale: float | None = Field(default=None, ge=0.0, le=30.0)
    seed: int | None = Field(
        default=None, ge=0, le=2**63 - 1, description="Same seed, same image; image i of a request uses seed + i."
    )
    refiner_start: float | None = Field(
        default=None, ge=0.0, le=1.0, description="Fraction of steps done by the base before the refiner takes over; 1.0 = base only."
    )
    reference_image: str | None = Field(
        default=None,
        description=(
            "A photo the pictures should resemble (base64 PNG, JPEG or WebP, a `data:` URL allowed; the upload rules apply), "
            "applied through an IP-Adapter."
        ),
    )
    reference_strength: float | None = Field(
        default=None, ge=0.0, le=1.0, description="How strongly the picture follows `reference_image` (0 ignores it); default FABULA_REFERENCE_STRENGTH."
    )


class ImageData(BaseModel):
    b64_json: str
    revised_prompt: str | None = None
    seed: int | None = None
    flagged: bool = Field(
        default=False,
        description="The image safety classifier flagged the picture: `b64_json` then holds a calm placeholder of the same size, never the flagged pixels.",
    )


class ImageGenerationResponse(BaseModel):
    """OpenAI Images API shape; `openai` clients keep the extra fields in `model_extra`."""

    created: int
    data: list[ImageData]
    model: str | None = None
    timings: Timings | None = None
    warnings: list[str] = Field(
        default_factory=list,
        description="Plain sentences about what the model did not use, e.g. the words past the text encoders' 77 tokens.",
    )


_SIZE = re.compile(r"\s*([0-9]{1,6})\s*[x×]\s*([0-9]{1,6})\s*")


def parse_size(size: str) -> tuple[int, int]:
    """`"768x512"` → (768, 512); raises ValueError with a message for the user. ASCII digits only, at most six a
    side: no other script's digits, and no number too long to compute with."""
    match = _SIZE.fullmatch(size.lower())
    if match is None:
        shown = size if len(size) <= 40 else size[:40] + "…"
        raise ValueError(f"`size` must look like WIDTHxHEIGHT (e.g. 1024x1024, at most 6 digits a side), not {shown!r}")
    return int(match.group(1)), int(match.group(2))
