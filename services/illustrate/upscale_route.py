"""`POST /v1/images/upscale`: enlarge one picture for print (multipart `image`, as OpenAI's image edits take it).

`scale` (2 to 4) or a target `size`; the answer is the Images API response (`data[0].b64_json`, a PNG), with the
upscaler's id in `model` and, where the classical filter did the work, a sentence in `warnings` that says so.
Requests share model calls with the service's other requests through its one batcher (grouped by `batch_key`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile

from services.caption.uploads import read_upload
from services.illustrate.upscale_requests import UpscaleJob, check_upscale_cost, plan_upscale, target_size
from services.illustrate.upscaler import CLASSICAL_FILTER_NOTE
from shared.errors import InvalidRequest
from shared.images import load_image, to_b64_png
from shared.request_lifetime import DeadlineDep, cancel_on_disconnect
from shared.schemas import ImageData, ImageGenerationResponse, Timings
from shared.settings import Settings

ROUTE = "/v1/images/upscale"


def upscale_router() -> APIRouter:
    router = APIRouter(tags=["images"])

    @router.post(ROUTE, response_model=ImageGenerationResponse, summary="Enlarge a picture for print (Real-ESRGAN class, `b64_json`).")
    async def upscale_image(
        request: Request,
        deadline: DeadlineDep,
        image: Annotated[UploadFile, File(description="The picture: PNG, JPEG or WebP (the upload rules apply).")],
        scale: Annotated[float | None, Form(description="Enlarge by this factor, 2 to 4 (default 4 when `size` is not sent).")] = None,
        size: Annotated[str | None, Form(description="Or the exact size wanted, WIDTHxHEIGHT, at least the picture's own.")] = None,
        response_format: Annotated[str, Form(description="Only `b64_json`.")] = "b64_json",
        model: Annotated[str | None, Form(description="Ignored: the service upscales with the model it loaded.")] = None,
    ) -> ImageGenerationResponse:
        started = time.perf_counter()
        settings: Settings = request.app.state.settings
        if response_format != "b64_json":
            raise InvalidRequest(f"`response_format` must be `b64_json`, not {response_format!r}.", param="response_format")
        upscaler = request.app.state.holder.require().require_upscaler()
        data = await read_upload(image, max_bytes=settings.max_upload_bytes)
        picture = await asyncio.to_thread(load_image, data, max_bytes=settings.max_upload_bytes, max_pixels=settings.max_image_pixels)
        target, field = target_size(picture.size, scale=scale, size=size.strip() if size and size.strip() else None)
        plan = plan_upscale(picture.size, target, upscaler.model_scale)
        check_upscale_cost(plan, field, settings)
        job = UpscaleJob(picture.convert("RGB"), plan)
        outcome = await cancel_on_disconnect(request, request.app.state.batcher.submit(job, key=job.batch_key, weight=job.weight, deadline=deadline))
        encoded = await asyncio.to_thread(to_b64_png, outcome.result)
        request.app.state.metrics.generated_items.labels("illustrate").inc()
        return ImageGenerationResponse(
            created=int(time.time()),
            data=[ImageData(b64_json=encoded)],
            model=upscaler.model_id,
            timings=Timings(
                queue_seconds=round(outcome.queue_seconds, 4), inference_seconds=round(outcome.inference_seconds, 4),
                total_seconds=round(time.perf_counter() - started, 4),
            ),
            warnings=[CLASSICAL_FILTER_NOTE] if upscaler.classical else [],
        )

    return router
