"""Merge concurrent image requests into one pipeline call (micro-batching).

A GPU paints four 1024² pictures in one call in much less than four times the time of one, and a book asks
for all its pages at once. Requests that can share a call (same size, steps, guidance and hand-off: the
job's `batch_key`) and arrive within `batch_window_ms` of the first are merged, up to `max_batch_size`
images. While the model is busy, new requests keep joining their groups, so a burst under load becomes a
few big calls. The model runs in one worker thread, one call at a time, and the event loop stays free.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from collections.abc import Callable, Hashable

from PIL import Image

from services.illustrate.engine import GenerationJob
from shared.errors import ModelNotReady
from shared.metrics import ServiceMetrics

logger = logging.getLogger(__name__)

BatchRunner = Callable[[list[GenerationJob]], list[list[Image.Image]]]


@dataclass(frozen=True)
class BatchOutcome:
    images: list[Image.Image]
    queue_seconds: float
    inference_seconds: float
    batch_requests: int


@dataclass
class _Waiting:
    job: GenerationJob
    future: asyncio.Future[BatchOutcome]
    enqueued: float


class MicroBatcher:
    def __init__(self, run_batch: BatchRunner, *, window_seconds: float, max_batch_images: int, metrics: ServiceMetrics) -> None:
        self._run_batch = run_batch
        self._window_seconds = window_seconds
        self._max_batch_images = max(1, max_batch_images)
        self._metrics = metrics
        self._groups: dict[Hashable, list[_Waiting]] = {}
        self._in_flight: list[_Waiting] = []
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None

    def start(self) -> None:
        """Start the worker on the running event loop (the server's)."""
        if self._worker is None:
            self._wakeup = asyncio.Event()
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="illustrate-model")
            self._worker = asyncio.get_running_loop().create_task(self._serve(), name="illustrate-batcher")

    async def stop(self) -> None:
        """Stop the worker; requests still waiting (or in the call being cut short) get a 503."""
        abandoned = [*self._in_flight, *(waiting for group in self._groups.values() for waiting in group)]
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            self._worker = None
        for waiting in abandoned:
            if not waiting.future.done():
                waiting.future.set_exception(ModelNotReady("The illustration service is shutting down; try again shortly."))
        self._groups.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def submit(self, job: GenerationJob) -> BatchOutcome:
        """Queue `job` and wait for its images. Cancelling the caller drops the job, never the batch it is in."""
        self.start()
        assert self._wakeup is not None
        future: asyncio.Future[BatchOutcome] = asyncio.get_running_loop().create_future()
        self._groups.setdefault(job.batch_key, []).append(_Waiting(job, future, time.perf_counter()))
        self._wakeup.set()
        return await future

    async def _serve(self) -> None:
        while True:
            batch = await self._next_batch()
            await self._paint(batch)

    async def _next_batch(self) -> list[_Waiting]:
        """Wait until a group is full, or the oldest group's window has passed, and take it."""
        assert self._wakeup is not None
        while True:
            self._drop_abandoned()
            if not self._groups:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            for key, group in self._groups.items():
                if sum(waiting.job.count for waiting in group) >= self._max_batch_images:
                    return self._take(key)
            key, group = min(self._groups.items(), key=lambda item: item[1][0].enqueued)
            remaining = group[0].enqueued + self._window_seconds - time.perf_counter()
            if remaining <= 0:
                return self._take(key)
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    def _drop_abandoned(self) -> None:
        for key in list(self._groups):
            group = [waiting for waiting in self._groups[key] if not waiting.future.done()]
            if group:
                self._groups[key] = group
            else:
                del self._groups[key]

    def _take(self, key: Hashable) -> list[_Waiting]:
        """The oldest jobs of the group that fit in one call (always at least one, whatever its size)."""
        group = self._groups[key]
        taken = [group[0]]
        images = group[0].job.count
        for waiting in group[1:]:
            if images + waiting.job.count > self._max_batch_images:
                break
            taken.append(waiting)
            images += waiting.job.count
        rest = group[len(taken) :]
        if rest:
            self._groups[key] = rest
        else:
            del self._groups[key]
        return taken

    async def _paint(self, batch: list[_Waiting]) -> None:
        started = time.perf_counter()
        waits = [started - waiting.enqueued for waiting in batch]
        self._metrics.observe_batch(len(batch), waits)
        self._in_flight = batch
        try:
            results = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._run_batch, [waiting.job for waiting in batch]
            )
        except Exception as exc:  # noqa: BLE001 - handed to every waiting request, whose handler reports it
            logger.exception("image batch failed", extra={"fields": {"requests": len(batch)}})
            for waiting in batch:
                if not waiting.future.done():
                    waiting.future.set_exception(exc)
            return
        finally:
            self._in_flight = []
        inference_seconds = time.perf_counter() - started
        for waiting, wait, images in zip(batch, waits, results, strict=True):
            if not waiting.future.done():
                waiting.future.set_result(BatchOutcome(images, wait, inference_seconds, len(batch)))
