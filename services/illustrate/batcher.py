"""Micro-batching for pictures: concurrent image requests share one pipeline call through the shared batcher.

Requests that can share a call have the same `GenerationJob.batch_key` (size, steps, guidance, hand-off); a
call holds at most `max_batch_images` images, counted by each job's `count`. A client that leaves before its
call starts is dropped, and a request past its deadline is answered 504 without being painted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

from services.illustrate.engine import GenerationJob, IllustrateEngine, PaintedImage
from shared.batching import MicroBatcher
from shared.metrics import ServiceMetrics

logger = logging.getLogger(__name__)

BatchRunner = Callable[[list[GenerationJob]], list[list[PaintedImage]]]


@dataclass(frozen=True)
class BatchOutcome:
    images: list[PaintedImage]
    queue_seconds: float
    inference_seconds: float
    batch_requests: int


def paint_batch(engine: IllustrateEngine, jobs: list[GenerationJob]) -> list[list[PaintedImage]]:
    """One pipeline call; if a batch does not fit in GPU memory, paint its requests one by one instead."""
    try:
        return engine.paint(jobs)
    except torch.cuda.OutOfMemoryError:
        if len(jobs) == 1:
            raise
        logger.warning("batch did not fit in memory; painting its requests one by one", extra={"fields": {"requests": len(jobs)}})
        torch.cuda.empty_cache()
        return [engine.paint([job])[0] for job in jobs]


class ImageBatcher:
    def __init__(self, run_batch: BatchRunner, *, window_seconds: float, max_batch_images: int, metrics: ServiceMetrics) -> None:
        self._batcher: MicroBatcher[GenerationJob, list[PaintedImage]] = MicroBatcher(
            run_batch, name="illustrate", metrics=metrics, window_seconds=window_seconds, max_batch_weight=max_batch_images,
        )

    @property
    def queued(self) -> int:
        """Requests waiting for their call (not yet painting)."""
        return self._batcher.queued

    def start(self) -> None:
        self._batcher.start()

    async def stop(self) -> None:
        await self._batcher.stop()

    async def submit(self, job: GenerationJob, *, deadline: float | None = None) -> BatchOutcome:
        """Queue `job` and wait for its images. Cancelling the caller drops the job, never the batch it is in."""
        batched = await self._batcher.submit(job, key=job.batch_key, weight=job.count, deadline=deadline)
        return BatchOutcome(batched.result, batched.queue_seconds, batched.inference_seconds, batched.batch_requests)
