"""BENCHMARK ONLY: a simulated accelerator that sleeps instead of computing, behind the services' own micro-batcher.

One call runs at a time (the shared `MicroBatcher`). The first waiting request opens a batch; requests that
arrive within `window_seconds` join it while their items fit in `max_batch`; the call then takes
`seconds_per_call` plus `seconds_per_extra_item` for every item past the first. A request larger than
`max_batch` runs alone and takes as many calls as it needs.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

from shared.batching import MicroBatcher
from shared.metrics import ServiceMetrics


@dataclass(frozen=True)
class BatchOutcome:
    queue_seconds: float
    inference_seconds: float
    batch_requests: int
    batch_items: int


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
        self._batcher: MicroBatcher[int, int] = MicroBatcher(
            self._sleep, name=name, metrics=metrics, window_seconds=self.window_seconds, max_batch_weight=self.max_batch,
        )

    def call_seconds(self, items: int) -> float:
        calls = math.ceil(items / self.max_batch)
        return calls * self.seconds_per_call + self.seconds_per_extra_item * (items - calls)

    def start(self) -> None:
        self._batcher.start()

    async def stop(self) -> None:
        await self._batcher.stop()

    async def submit(self, items: int) -> BatchOutcome:
        batched = await self._batcher.submit(items, weight=items)
        return BatchOutcome(batched.queue_seconds, batched.inference_seconds, batched.batch_requests, batched.batch_weight)

    async def _sleep(self, requests: list[int]) -> list[int]:
        items = sum(requests)
        await asyncio.sleep(self.call_seconds(items))
        self.metrics.generated_items.labels(self.name).inc(items)
        return requests
