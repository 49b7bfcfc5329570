"""Micro-batching: concurrent caption requests share one `generate` call.

Requests wait in an asyncio queue; one consumer task collects what arrives within `FABULA_BATCH_WINDOW_MS`
(up to `FABULA_MAX_BATCH_SIZE`) and runs the batch on a single worker thread, so the event loop keeps
answering health checks while the model works and the model is never used by two threads at once.
A request whose client went away is dropped before its batch runs, or its result is discarded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from PIL import Image

from services.caption.engine import CaptionEngine, CaptionResult
from shared.errors import ModelNotReady
from shared.metrics import ServiceMetrics

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchedCaption:
    result: CaptionResult
    queue_seconds: float
    inference_seconds: float
    batch_size: int


@dataclass
class _Pending:
    image: Image.Image
    prompt: str
    max_new_tokens: int
    future: asyncio.Future[BatchedCaption]
    enqueued_at: float = field(default_factory=time.perf_counter)


class CaptionBatcher:
    def __init__(
        self, engine: Callable[[], CaptionEngine], *, metrics: ServiceMetrics, max_batch_size: int, window_seconds: float
    ) -> None:
        self._engine = engine
        self._metrics = metrics
        self._max_batch_size = max(1, max_batch_size)
        self._window_seconds = max(0.0, window_seconds)
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="caption-model")
        self._consumer: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._consumer is None:
            self._consumer = asyncio.get_running_loop().create_task(self._consume(), name="caption-batcher")

    async def stop(self) -> None:
        if self._consumer is not None:
            self._consumer.cancel()
            await asyncio.gather(self._consumer, return_exceptions=True)
            self._consumer = None
        while not self._queue.empty():
            pending = self._queue.get_nowait()
            if not pending.future.done():
                pending.future.set_exception(ModelNotReady("The caption service is shutting down; try again shortly."))
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, image: Image.Image, prompt: str, max_new_tokens: int) -> BatchedCaption:
        if self._consumer is None or self._consumer.done():
            raise ModelNotReady("The caption service is not accepting work (it is starting or stopping).")
        future: asyncio.Future[BatchedCaption] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(image=image, prompt=prompt, max_new_tokens=max_new_tokens, future=future))
        return await future

    async def _consume(self) -> None:
        batch: list[_Pending] = []
        try:
            while True:
                batch = [await self._queue.get()]
                if self._window_seconds and self._queue.qsize() < self._max_batch_size - 1:
                    await asyncio.sleep(self._window_seconds)
                while len(batch) < self._max_batch_size and not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                batch = [pending for pending in batch if not pending.future.done()]
                if batch:
                    await self._run(batch)
        finally:
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(ModelNotReady("The caption service is shutting down; try again shortly."))

    async def _run(self, batch: list[_Pending]) -> None:
        """Run one batch; if it fails as a whole, run its requests one by one so one bad request fails alone."""
        try:
            await self._run_once(batch)
        except Exception as exc:  # noqa: BLE001 - handed to the waiting requests
            if len(batch) == 1:
                if not batch[0].future.done():
                    batch[0].future.set_exception(exc)
                return
            logger.warning("caption batch failed; retrying its requests one by one",
                           extra={"fields": {"batch_size": len(batch), "error": repr(exc)}})
            for pending in batch:
                await self._run([pending])

    async def _run_once(self, batch: list[_Pending]) -> None:
        engine = self._engine()
        started = time.perf_counter()
        queue_waits = [started - pending.enqueued_at for pending in batch]
        results = await asyncio.get_running_loop().run_in_executor(
            self._executor,
            engine.caption,
            [pending.image for pending in batch],
            [pending.prompt for pending in batch],
            [pending.max_new_tokens for pending in batch],
        )
        inference_seconds = time.perf_counter() - started
        self._metrics.observe_batch(len(batch), queue_waits)
        self._metrics.generated_items.labels(self._metrics.service).inc(len(batch))
        for pending, result, waited in zip(batch, results, queue_waits):
            if not pending.future.done():
                pending.future.set_result(BatchedCaption(
                    result=result, queue_seconds=waited, inference_seconds=inference_seconds, batch_size=len(batch),
                ))
