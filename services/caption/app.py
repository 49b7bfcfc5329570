"""The caption service: `POST /v1/caption` (multipart photo in, a storybook description out).

Health, readiness, metrics, auth, request ids, the body limit, JSON errors and the micro-batcher come from
`shared.service_app`; this module declares the service's spec: the model check and loader, the route, and how
concurrent requests share one `generate` call (if a call fails as a whole, its requests are run one by one, so
one bad request fails alone). A request whose client leaves before its turn is dropped; one past its deadline is
answered 504.

The route's parameters are annotated without `from __future__ import annotations`: FastAPI must evaluate
them, and their descriptions use this factory's local settings.
"""

import logging
import time
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, FastAPI, File, Form, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from services.caption.engine import DEFAULT_MAX_NEW_TOKENS, DEFAULT_PROMPT, CaptionEngine, CaptionItem, CaptionResult, caption_batch
from services.caption.tiny import build_tiny_llava
from services.caption.uploads import read_upload, upload_body_limit
from shared.batching import Batched, BatchSpec, MicroBatcher
from shared.errors import InvalidRequest, ModelUnavailable
from shared.images import load_image
from shared.logs import log_fields
from shared.metrics import ServiceMetrics
from shared.profiles import TINY, model_id_for, resolve_model_path, tiny_dir
from shared.request_lifetime import DeadlineDep, cancel_on_disconnect
from shared.schemas import CaptionResponse, Timings
from shared.service_app import ServiceSpec
from shared.settings import Settings

logger = logging.getLogger(__name__)

SERVICE = "caption"
ROUTE = "/v1/caption"


def resolve_caption_model(settings: Settings) -> tuple[str, Path]:
    """The caption model id and the local folder that holds it; raises `ModelUnavailable` without waiting.

    On the tiny profile the folder is built (once) into the model cache.
    """
    model_id = model_id_for(SERVICE, settings)
    if model_id is None:
        raise ModelUnavailable("FABULA_CAPTION_MODEL is set to none, but the caption service needs a model.",
                               param="FABULA_CAPTION_MODEL")
    if model_id == TINY:
        return model_id, build_tiny_llava(tiny_dir(SERVICE, settings))
    return model_id, resolve_model_path(model_id, role=SERVICE, settings=settings)


def load_engine(settings: Settings, device: str, metrics: ServiceMetrics | None = None) -> CaptionEngine:
    model_id, folder = resolve_caption_model(settings)
    return CaptionEngine.load(folder, model_id=model_id, device=device, settings=settings)


def caption_router(settings: Settings) -> APIRouter:
    router = APIRouter(tags=["caption"])
    default_tokens = min(DEFAULT_MAX_NEW_TOKENS, settings.max_caption_tokens)

    @router.post(ROUTE, response_model=CaptionResponse, summary="Describe a photo in words.")
    async def caption(
        request: Request,
        deadline: DeadlineDep,
        image: Annotated[UploadFile, File(description="The photo: JPEG, PNG, WebP or GIF (animated: the first frame).")],
        prompt: Annotated[str | None, Form(
            description=f"What to ask about the photo, at most {settings.max_prompt_chars} characters "
                        f"(FABULA_MAX_PROMPT_CHARS). Default: {DEFAULT_PROMPT}",
        )] = None,
        max_new_tokens: Annotated[int | None, Form(
            description=f"Longest caption in tokens, 1 to {settings.max_caption_tokens} (FABULA_MAX_CAPTION_TOKENS); "
                        f"default {default_tokens}.",
        )] = None,
    ) -> CaptionResponse:
        started = time.perf_counter()
        tokens = checked_max_new_tokens(max_new_tokens, settings, default=default_tokens)
        question = checked_prompt(prompt, settings)
        data = await read_upload(image, max_bytes=settings.max_upload_bytes)
        picture = await run_in_threadpool(
            load_image, data, max_bytes=settings.max_upload_bytes, max_pixels=settings.max_image_pixels
        )
        engine: CaptionEngine = request.app.state.holder.require()
        engine.check_prompt(question)
        batcher: MicroBatcher[CaptionItem, CaptionResult] = request.app.state.batcher
        batched: Batched[CaptionResult] = await cancel_on_disconnect(
            request, batcher.submit(CaptionItem(picture, question, tokens), deadline=deadline)
        )
        request.app.state.metrics.generated_items.labels(SERVICE).inc()
        total_seconds = time.perf_counter() - started
        log_fields(logger, "captioned", new_tokens=batched.result.new_tokens, batch_size=batched.batch_requests,
                   queue_seconds=round(batched.queue_seconds, 4), inference_seconds=round(batched.inference_seconds, 4), level=logging.DEBUG)
        return CaptionResponse(
            caption=batched.result.caption,
            model=engine.model_id,
            prompt=question,
            new_tokens=batched.result.new_tokens,
            timings=Timings(queue_seconds=batched.queue_seconds, inference_seconds=batched.inference_seconds,
                            total_seconds=total_seconds),
        )

    return router


def checked_max_new_tokens(value: int | None, settings: Settings, *, default: int) -> int:
    if value is None:
        return default
    if not 1 <= value <= settings.max_caption_tokens:
        raise InvalidRequest(
            f"`max_new_tokens` must be between 1 and {settings.max_caption_tokens} (FABULA_MAX_CAPTION_TOKENS), not {value}.",
            param="max_new_tokens",
        )
    return value


def checked_prompt(value: str | None, settings: Settings) -> str:
    """The user's prompt, or the storybook default when none (or only whitespace) was sent."""
    if value is None or not value.strip():
        return DEFAULT_PROMPT
    if len(value) > settings.max_prompt_chars:
        raise InvalidRequest(
            f"`prompt` is {len(value):,} characters; the limit is {settings.max_prompt_chars:,} (FABULA_MAX_PROMPT_CHARS).",
            param="prompt",
        )
    return value.strip()


SPEC = ServiceSpec(
    name=SERVICE,
    title="Fabula caption service",
    description="Describes a photo in words with a LLaVA model, for the storybook planner.",
    resolver=resolve_caption_model,
    load=load_engine,
    routers=lambda settings: [caption_router(settings)],
    body_limit=upload_body_limit,
    batch=BatchSpec(run_batch=caption_batch, retry_alone_on=(Exception,)),
)


def create_app(settings: Settings, *, device: str = "cpu") -> FastAPI:
    return SPEC.create_app(settings, device=device)
