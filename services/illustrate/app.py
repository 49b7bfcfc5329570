"""The illustration service: `POST /v1/images/generations` in the OpenAI Images API shape, on SDXL base + refiner.

`openai.OpenAI(base_url=<service>/v1).images.generate(...)` works unchanged; Fabula's extras (negative prompt,
steps, guidance, seed, refiner hand-off, style) travel in `extra_body`. Concurrent requests are micro-batched.
A prompt longer than the text encoders read is still painted, and the response's `warnings` says which words
were not used.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Annotated

import torch
from fastapi import APIRouter, Depends, FastAPI, Request
from PIL import Image
from starlette.requests import ClientDisconnect

from services.illustrate.batcher import MicroBatcher
from services.illustrate.engine import GenerationJob, IllustrateEngine
from services.illustrate.tiny import BASE_FOLDER, REFINER_FOLDER, build_tiny_sdxl
from services.illustrate.validation import build_job, check_limits, max_body_bytes, parse_generation_request
from shared.errors import InvalidRequest, ModelUnavailable, PayloadTooLarge
from shared.images import to_b64_png
from shared.logs import request_id_var
from shared.metrics import ServiceMetrics
from shared.model_holder import ModelHolder
from shared.profiles import TINY, model_id_for, resolve_model_path, tiny_dir
from shared.schemas import ImageData, ImageGenerationRequest, ImageGenerationResponse, Timings
from shared.service_app import create_service_app
from shared.settings import Settings

logger = logging.getLogger(__name__)

SERVICE = "illustrate"


def resolve_illustrate_models(settings: Settings) -> tuple[str, Path, Path | None]:
    """(model id, base folder, refiner folder or None), without touching the network.

    The tiny profile builds its random base and refiner on first use; real ids must already be on this
    machine, or this raises `ModelUnavailable` saying what to download or set.
    """
    model_id = model_id_for("illustrate", settings) or TINY
    refiner_id = model_id_for("refiner", settings)
    if model_id == TINY:
        folder = build_tiny_sdxl(tiny_dir(SERVICE, settings))
        if refiner_id not in (None, TINY):
            raise ModelUnavailable(
                f"The tiny illustration model pairs only with the tiny refiner, not '{refiner_id}'. "
                "Set FABULA_REFINER_MODEL to `tiny` or `none`.",
                param="FABULA_REFINER_MODEL",
            )
        return TINY, folder / BASE_FOLDER, folder / REFINER_FOLDER if refiner_id == TINY else None
    if refiner_id == TINY:
        raise ModelUnavailable(
            f"The tiny refiner cannot finish pictures of '{model_id}'. Set FABULA_REFINER_MODEL to a real refiner or `none`.",
            param="FABULA_REFINER_MODEL",
        )
    base_path = resolve_model_path(model_id, role="illustrate", settings=settings)
    refiner_path = resolve_model_path(refiner_id, role="refiner", settings=settings) if refiner_id else None
    return model_id, base_path, refiner_path


def create_app(settings: Settings, *, device: str = "cpu") -> FastAPI:
    metrics = ServiceMetrics(SERVICE)

    def load() -> IllustrateEngine:
        model_id, base_path, refiner_path = resolve_illustrate_models(settings)
        return IllustrateEngine.load(base_path, refiner_path, model_id=model_id, device=device, settings=settings)

    holder: ModelHolder[IllustrateEngine] = ModelHolder(load, name=SERVICE)
    batcher = MicroBatcher(
        lambda jobs: _paint(holder.require(), jobs),
        window_seconds=settings.batch_window_ms / 1000,
        max_batch_images=settings.max_batch_size,
        metrics=metrics,
    )

    async def start_batcher(app: FastAPI) -> None:
        batcher.start()

    async def stop_batcher(app: FastAPI) -> None:
        await batcher.stop()

    app = create_service_app(
        name=SERVICE,
        title="Fabula illustrate",
        description="SDXL base + refiner behind the OpenAI Images API (`POST /v1/images/generations`), micro-batched.",
        settings=settings,
        holder=holder,
        metrics=metrics,
        routers=[router],
        on_startup=start_batcher,
        on_shutdown=stop_batcher,
    )
    app.state.batcher = batcher
    return app


def _paint(engine: IllustrateEngine, jobs: list[GenerationJob]) -> list[list[Image.Image]]:
    """One pipeline call; if a batch does not fit in GPU memory, paint its requests one by one instead."""
    try:
        return engine.generate(jobs)
    except torch.cuda.OutOfMemoryError:
        if len(jobs) == 1:
            raise
        logger.warning("batch did not fit in memory; painting its requests one by one", extra={"fields": {"requests": len(jobs)}})
        torch.cuda.empty_cache()
        return [engine.generate([job])[0] for job in jobs]


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _holder(request: Request) -> ModelHolder[IllustrateEngine]:
    return request.app.state.holder


def _batcher(request: Request) -> MicroBatcher:
    return request.app.state.batcher


def _metrics(request: Request) -> ServiceMetrics:
    return request.app.state.metrics


SettingsDep = Annotated[Settings, Depends(_settings)]
HolderDep = Annotated[ModelHolder[IllustrateEngine], Depends(_holder)]
BatcherDep = Annotated[MicroBatcher, Depends(_batcher)]
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
    request: Request, settings: SettingsDep, holder: HolderDep, batcher: BatcherDep, metrics: MetricsDep
) -> ImageGenerationResponse:
    started = time.perf_counter()
    body = parse_generation_request(await _read_body(request, max_body_bytes(settings)), settings)
    size = check_limits(body, settings)
    engine = holder.require()
    job = build_job(body, size, engine.defaults)
    warnings = _window_warnings(engine, job)
    outcome = await batcher.submit(job)
    encoded = await asyncio.to_thread(lambda: [to_b64_png(image) for image in outcome.images])
    metrics.generated_items.labels(SERVICE).inc(len(encoded))
    return ImageGenerationResponse(
        created=int(time.time()),
        data=[ImageData(b64_json=data, revised_prompt=job.prompt, seed=seed) for data, seed in zip(encoded, job.seeds, strict=True)],
        model=engine.model_id,
        timings=Timings(
            queue_seconds=round(outcome.queue_seconds, 4),
            inference_seconds=round(outcome.inference_seconds, 4),
            total_seconds=round(time.perf_counter() - started, 4),
        ),
        warnings=warnings,
    )


def _window_warnings(engine: IllustrateEngine, job: GenerationJob) -> list[str]:
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


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refusing one past `limit` as soon as it is, instead of buffering whatever a client sends."""
    chunks: list[bytes] = []
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise PayloadTooLarge(
                    f"The request body is over {limit:,} bytes (the limit follows FABULA_MAX_PROMPT_CHARS).", param="body"
                )
            chunks.append(chunk)
    except ClientDisconnect:
        # Nobody is left to read the answer; this keeps the departure out of the error log.
        raise InvalidRequest("The client closed the connection before the request body arrived.", param="body") from None
    return b"".join(chunks)
