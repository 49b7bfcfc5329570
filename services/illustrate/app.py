"""The illustration service: `POST /v1/images/generations` in the OpenAI Images API shape, on SDXL base + refiner,
and `POST /v1/images/upscale` (`upscale_route`), which enlarges a picture for print.

On the offline profile (model id `photo-restyle`) no model paints: every picture is the request's
`reference_image` restyled with OpenCV for the page (`restyle`), and a request without one is refused.

`openai.OpenAI(base_url=<service>/v1).images.generate(...)` works unchanged; Fabula's extras (negative prompt,
steps, guidance, seed, refiner hand-off, style) travel in `extra_body`. Concurrent requests are micro-batched;
one request may cost at most FABULA_MAX_PIXEL_STEPS (width × height × steps × n, a default per profile), so no
request can hold the model for minutes, and a client that leaves before its turn is dropped unpainted.
A prompt longer than the text encoders read is still painted, and the response's `warnings` says which words
were not used.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Annotated, NamedTuple

import torch
from fastapi import APIRouter, Depends, FastAPI, Request
from PIL import Image

from services.illustrate.engine import GenerationJob, IllustrateEngine, PaintedImage
from services.illustrate.likeness import LikenessWeights, find_likeness_weights
from services.illustrate.picture_engine import PictureEngine
from services.illustrate.restyle import PHOTO_REQUIRED, RestyleEngine
from services.illustrate.safety import SafetyChecker, find_safety_checker
from services.illustrate.tiny import BASE_FOLDER, REFINER_FOLDER, build_tiny_sdxl
from services.illustrate.upscale_models import resolve_upscaler
from services.illustrate.upscale_requests import UpscaleJob
from services.illustrate.upscale_route import upscale_router
from services.illustrate.upscaler import Upscaler
from services.illustrate.validation import build_job, check_cost, check_limits, decode_reference, generation_body_limit, parse_generation_request
from shared.batching import BatchSpec, MicroBatcher
from shared.bodies import read_body
from shared.errors import InvalidRequest, ModelUnavailable
from shared.images import to_b64_png
from shared.logs import request_id_var
from shared.metrics import ServiceMetrics
from shared.model_holder import ModelHolder
from shared.profiles import RESTYLE, TINY, model_id_for, resolve_model_path, tiny_dir
from shared.request_lifetime import DeadlineDep, cancel_on_disconnect
from shared.schemas import ImageData, ImageGenerationRequest, ImageGenerationResponse, Timings
from shared.service_app import ServiceSpec
from shared.settings import Settings

logger = logging.getLogger(__name__)

SERVICE = "illustrate"


class IllustrateModels(NamedTuple):
    """The picture model's id and folders; the photo restyler (`RESTYLE`) has neither folder."""

    model_id: str
    base: Path | None
    refiner: Path | None


def resolve_illustrate_models(settings: Settings) -> IllustrateModels:
    """(model id, base folder, refiner folder or None), without touching the network.

    The tiny profile builds its random base and refiner on first use; the photo restyler needs no weights; real
    ids must already be on this machine, or this raises `ModelUnavailable` saying what to download or set.
    """
    model_id = model_id_for("illustrate", settings) or TINY
    refiner_id = model_id_for("refiner", settings)
    if model_id == RESTYLE:
        if settings.refiner_model is not None and refiner_id is not None:
            raise ModelUnavailable(
                f"The photo restyler ('{RESTYLE}') draws no pictures a refiner could finish, so it takes no refiner, "
                f"not '{refiner_id}'. Set FABULA_REFINER_MODEL to `none`.",
                param="FABULA_REFINER_MODEL",
            )
        if settings.safety_checker:
            find_safety_checker(model_id, settings, checker_id=settings.safety_model)  # every picture must pass it: fail at start
        return IllustrateModels(RESTYLE, None, None)
    if model_id == TINY:
        folder = build_tiny_sdxl(tiny_dir(SERVICE, settings))
        if refiner_id not in (None, TINY):
            raise ModelUnavailable(
                f"The tiny illustration model pairs only with the tiny refiner, not '{refiner_id}'. "
                "Set FABULA_REFINER_MODEL to `tiny` or `none`.",
                param="FABULA_REFINER_MODEL",
            )
        return IllustrateModels(TINY, folder / BASE_FOLDER, folder / REFINER_FOLDER if refiner_id == TINY else None)
    if refiner_id == TINY:
        raise ModelUnavailable(
            f"The tiny refiner cannot finish pictures of '{model_id}'. Set FABULA_REFINER_MODEL to a real refiner or `none`.",
            param="FABULA_REFINER_MODEL",
        )
    base_path = resolve_model_path(model_id, role="illustrate", settings=settings)
    refiner_path = resolve_model_path(refiner_id, role="refiner", settings=settings) if refiner_id else None
    if settings.safety_checker:
        find_safety_checker(model_id, settings, checker_id=settings.safety_model)  # every picture must pass it: fail at start
    return IllustrateModels(model_id, base_path, refiner_path)


def load_engine(settings: Settings, device: str, metrics: ServiceMetrics | None = None) -> PictureEngine:
    """The painter with its likeness adapter (when its weights are here; else a request with a photo is told why),
    or the photo restyler; either with its safety classifier (when FABULA_SAFETY_CHECKER is on, as it is by
    default) and its print upscaler (when its weights are here; else an upscale request is told what to download,
    and painting goes on)."""
    model_id, base_path, refiner_path = resolve_illustrate_models(settings)
    safety = None
    if settings.safety_checker:
        found = find_safety_checker(model_id, settings, checker_id=settings.safety_model)
        safety = SafetyChecker.load(found, device=device, threshold=settings.safety_threshold)
    upscaler: Upscaler | ModelUnavailable
    try:
        upscale_id, weights = resolve_upscaler(settings)
        upscaler = Upscaler.load(upscale_id, weights, device=device, settings=settings)
    except ModelUnavailable as missing:
        upscaler = missing
    if base_path is None:
        return RestyleEngine.load(settings=settings, safety=safety, upscaler=upscaler)
    try:
        likeness: LikenessWeights | ModelUnavailable = find_likeness_weights(model_id, settings, adapter_id=settings.likeness_model)
    except ModelUnavailable as missing:
        likeness = missing
    return IllustrateEngine.load(
        base_path, refiner_path, model_id=model_id, device=device, settings=settings, likeness=likeness, safety=safety, upscaler=upscaler,
    )


# The service's one batcher carries both kinds of request; a batch holds one kind (their batch keys differ).
IllustrateItem = GenerationJob | UpscaleJob
IllustrateResult = list[PaintedImage] | Image.Image


def run_batch(engine: PictureEngine, jobs: list[IllustrateItem]) -> list[IllustrateResult]:
    """One model call for the requests the batcher gathered: pictures painted, or pictures enlarged."""
    upscales = [job for job in jobs if isinstance(job, UpscaleJob)]
    if upscales:
        if len(upscales) != len(jobs):
            raise ValueError("a batch holds either pictures to paint or pictures to upscale")
        try:
            return list(engine.require_upscaler().upscale(upscales))
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            raise
    return list(paint_batch(engine, [job for job in jobs if isinstance(job, GenerationJob)]))


def paint_batch(engine: PictureEngine, jobs: list[GenerationJob]) -> list[list[PaintedImage]]:
    """One pipeline call for the requests the service's batcher gathered (they share one `batch_key`).

    A batch that does not fit in GPU memory frees the cache and fails; the batcher then paints its requests one
    by one (`retry_alone_on`).
    """
    try:
        return engine.paint(jobs)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        raise


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _holder(request: Request) -> ModelHolder[PictureEngine]:
    return request.app.state.holder


def _batcher(request: Request) -> MicroBatcher[IllustrateItem, IllustrateResult]:
    return request.app.state.batcher


def _metrics(request: Request) -> ServiceMetrics:
    return request.app.state.metrics


SettingsDep = Annotated[Settings, Depends(_settings)]
HolderDep = Annotated[ModelHolder[PictureEngine], Depends(_holder)]
BatcherDep = Annotated[MicroBatcher[IllustrateItem, IllustrateResult], Depends(_batcher)]
MetricsDep = Annotated[ServiceMetrics, Depends(_metrics)]

router = APIRouter(tags=["images"])

# The body is read and validated by hand (so a malformed or oversized body gets a message naming `body`);
# this tells the OpenAPI document what it holds.
_REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": ImageGenerationRequest.model_json_schema()}},
    }
}


@router.post(
    "/v1/images/generations",
    response_model=ImageGenerationResponse,
    openapi_extra=_REQUEST_BODY,
    summary="Paint pictures from a prompt (OpenAI Images API shape, `b64_json` only).",
)
async def generate_images(
    request: Request, deadline: DeadlineDep, settings: SettingsDep, holder: HolderDep, batcher: BatcherDep, metrics: MetricsDep
) -> ImageGenerationResponse:
    started = time.perf_counter()
    # Decode: every limit, the cost included, is checked before the request can reach the model.
    body = parse_generation_request(await read_body(request, generation_body_limit(settings)), settings)
    size = check_limits(body, settings)
    engine = holder.require()
    has_photo = bool(body.reference_image and body.reference_image.strip())
    if engine.restyles_photo and not has_photo:
        raise InvalidRequest(PHOTO_REQUIRED, param="reference_image")
    job = build_job(body, size, engine.defaults)
    check_cost(job, settings)
    if has_photo:
        # The cheap checks first; the photo is decoded off the event loop.
        if job.reference_strength > 0:
            engine.require_likeness()
        reference = await asyncio.to_thread(decode_reference, body.reference_image, settings)
        job = build_job(body, size, engine.defaults, reference=reference)
    warnings = _window_warnings(engine, job)
    # Predict: shared with concurrent requests; dropped if the client leaves before its turn.
    outcome = await cancel_on_disconnect(request, batcher.submit(job, key=job.batch_key, weight=job.count, deadline=deadline))
    pictures = outcome.result
    assert isinstance(pictures, list), "a painting job's result is its pictures"
    # Encode.
    encoded = await asyncio.to_thread(lambda: [to_b64_png(painted.image) for painted in pictures])
    metrics.generated_items.labels(SERVICE).inc(len(encoded))
    flags = [painted.flagged for painted in pictures]
    if any(flags):
        metrics.flagged_items.labels(SERVICE).inc(sum(flags))
        flagged_seeds = [seed for seed, flagged in zip(job.seeds, flags, strict=True) if flagged]
        logger.warning("pictures flagged by the safety classifier were replaced", extra={"fields": {"flagged": sum(flags), "seeds": flagged_seeds}})
    return ImageGenerationResponse(
        created=int(time.time()),
        data=[
            ImageData(b64_json=data, revised_prompt=job.prompt, seed=seed, flagged=flagged)
            for data, seed, flagged in zip(encoded, job.seeds, flags, strict=True)
        ],
        model=engine.model_id,
        timings=Timings(
            queue_seconds=round(outcome.queue_seconds, 4),
            inference_seconds=round(outcome.inference_seconds, 4),
            total_seconds=round(time.perf_counter() - started, 4),
        ),
        warnings=warnings,
    )


def _window_warnings(engine: PictureEngine, job: GenerationJob) -> list[str]:
    """A sentence for each text longer than the text encoders read (diffusers drops the rest), also logged."""
    if engine.prompt_window is None:
        return []
    overflows = engine.prompt_window.overflows(job.prompt, job.negative_prompt)
    for overflow in overflows:
        logger.warning(
            "text longer than the text encoders read; the rest is not used",
            extra={"fields": {
                "request_id": request_id_var.get(), "field": overflow.field, "tokens": overflow.tokens,
                "window": overflow.window, "tokenizer": overflow.tokenizer, "unused_text": overflow.unused_text[:200],
            }},
        )
    return [overflow.message for overflow in overflows]


SPEC = ServiceSpec(
    name=SERVICE,
    title="Fabula illustrate",
    description=(
        "SDXL base + refiner behind the OpenAI Images API (`POST /v1/images/generations`), and a print upscaler "
        "(`POST /v1/images/upscale`), micro-batched. On the offline profile (model `photo-restyle`) every picture is "
        "the request's `reference_image` restyled with OpenCV in the request's `style`, and a photo is required."
    ),
    resolver=resolve_illustrate_models,
    load=load_engine,
    routers=lambda _: [router, upscale_router()],
    body_limit=generation_body_limit,
    # A call holds at most FABULA_MAX_BATCH_SIZE images, counted by each request's `n` (an upscale counts one).
    batch=BatchSpec(run_batch=run_batch, retry_alone_on=(torch.cuda.OutOfMemoryError,)),
)


def create_app(settings: Settings, *, device: str = "cpu") -> FastAPI:
    return SPEC.create_app(settings, device=device)
