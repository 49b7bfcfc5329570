"""BENCHMARK ONLY: a simulated accelerator that sleeps instead of computing, with the services' micro-batching.

One call runs at a time. The first waiting request opens a batch; requests that arrive within `window_seconds`
join it while their items fit in `max_batch`; the call then takes `seconds_per_call` plus
`seconds_per_extra_item` for every item past the first. A request larger than `max_batch` runs alone and takes
as many calls as it needs.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field

from shared.errors import ModelNotReady
from shared.metrics import ServiceMetrics


@dataclass(frozen=True)
class BatchOutcome:
    queue_seconds: float
    inference_seconds: float
    batch_requests: int
    batch_items: int


@dataclass
class _Waiting:
    items: int
    future: asyncio.Future[BatchOutcome]
    enqueued_at: float = field(default_factory=time.perf_counter)


class SimulatedAccelerator:
    def __init__(
        self, name: str, *, seconds_per_call: float, max_batch: int, window_seconds: float, metrics: ServiceMetrics,
        seconds_per_extra_item: float = 0.0,
    ) -> None:
        self.name = name
        self.seconds_per_call = seconds_per_call
        self.seconds_per_extra_item = seconds_per_extra_item
        self.max_batch = max(1, max_batch)
        self.window_seconds = max(0.0, window_seconds)
        self.metrics = metrics
        self._queue: asyncio.Queue[_Waiting] = asyncio.Queue()
        self._consumer: asyncio.Task[None] | None = None

    def call_seconds(self, items: int) -> float:
        calls = math.ceil(items / self.max_batch)
        return calls * self.seconds_per_call + self.seconds_per_extra_item * (items - calls)

    def start(self) -> None:
        if self._consumer is None:
            self._consumer = asyncio.get_running_loop().create_task(self._consume(), name=f"{self.name}-simulated-accelerator")

    async def stop(self) -> None:
        if self._consumer is not None:
            self._consumer.cancel()
            await asyncio.gather(self._consumer, return_exceptions=True)
            self._consumer = None
        while not self._queue.empty():
            waiting = self._queue.get_nowait()
            if not waiting.future.done():
                waiting.future.set_exception(ModelNotReady(f"The {self.name} stand-in is shutting down."))

    async def submit(self, items: int) -> BatchOutcome:
        if self._consumer is None or self._consumer.done():
            raise ModelNotReady(f"The {self.name} stand-in is not accepting work.")
        future: asyncio.Future[BatchOutcome] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Waiting(items, future))
        return await future

    async def _consume(self) -> None:
        held: _Waiting | None = None
        while True:
            first = held or await self._queue.get()
            held = None
            batch, items = [first], first.items
            if self.window_seconds and items < self.max_batch:
                await asyncio.sleep(self.window_seconds)
            while not self._queue.empty():
                candidate = self._queue.get_nowait()
                if items + candidate.items > self.max_batch:
                    held = candidate
                    break
                batch.append(candidate)
                items += candidate.items
            batch = [waiting for waiting in batch if not waiting.future.done()]
            if not batch:
                continue
            items = sum(waiting.items for waiting in batch)
            started = time.perf_counter()
            seconds = self.call_seconds(items)
            await asyncio.sleep(seconds)
            waits = [started - waiting.enqueued_at for waiting in batch]
            self.metrics.observe_batch(len(batch), waits)
            self.metrics.generated_items.labels(self.name).inc(items)
            for waiting, waited in zip(batch, waits):
                if not waiting.future.done():
                    waiting.future.set_result(BatchOutcome(waited, seconds, len(batch), items))
