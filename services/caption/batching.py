"""Micro-batching for captions: concurrent requests share one `generate` call through the shared batcher.

Captions of any prompt and token limit can share a call (the batch runs to the longest limit and each caption
is cut to its own), so every request has the same batch key. If a call fails as a whole, its requests are run
one by one, so one bad request fails alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

from services.caption.engine import CaptionEngine, CaptionResult
from shared.batching import MicroBatcher
from shared.metrics import ServiceMetrics


@dataclass(frozen=True)
class CaptionItem:
    image: Image.Image
    prompt: str
    max_new_tokens: int


@dataclass(frozen=True)
class BatchedCaption:
    result: CaptionResult
    queue_seconds: float
    inference_seconds: float
    batch_size: int


class CaptionBatcher:
    def __init__(
        self, engine: Callable[[], CaptionEngine], *, metrics: ServiceMetrics, max_batch_size: int, window_seconds: float
    ) -> None:
        self._engine = engine
        self._metrics = metrics
        self._batcher: MicroBatcher[CaptionItem, CaptionResult] = MicroBatcher(
            self._caption, name="caption", metrics=metrics, window_seconds=window_seconds,
            max_batch_weight=max_batch_size, retry_alone=True,
        )

    def start(self) -> None:
        self._batcher.start()

    async def stop(self) -> None:
        await self._batcher.stop()

    async def submit(
        self, image: Image.Image, prompt: str, max_new_tokens: int, *, deadline: float | None = None
    ) -> BatchedCaption:
        batched = await self._batcher.submit(CaptionItem(image, prompt, max_new_tokens), deadline=deadline)
        return BatchedCaption(
            result=batched.result, queue_seconds=batched.queue_seconds, inference_seconds=batched.inference_seconds,
            batch_size=batched.batch_requests,
        )

    def _caption(self, items: list[CaptionItem]) -> list[CaptionResult]:
        results = self._engine().caption(
            [item.image for item in items], [item.prompt for item in items], [item.max_new_tokens for item in items]
        )
        self._metrics.generated_items.labels(self._metrics.service).inc(len(results))
        return results
