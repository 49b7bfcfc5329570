"""One micro-batcher for every model service: concurrent requests that can share a model call share one.

A GPU answers four requests in one call in much less than four times one call's time, and a book asks for all
its pages at once. A service declares how its requests are batched in a `BatchSpec` (the LitServe habit: a
model says `max_batch_size` and `batch_timeout`, the server owns the loop); the service frame builds one
`MicroBatcher` from it, starts it in the lifespan and stops it at shutdown.

Requests wait in groups by a batch key (requests of one group can share a call: same picture size and steps,
say); a group is run once its oldest request has waited `window_seconds`, or at once when it holds
`max_batch_weight` (images, captions). While the model is busy, new requests keep joining their groups, so a
burst under load becomes a few big calls. One call runs at a time: a plain function on one worker thread, a
coroutine function on the event loop; either way the event loop stays free for health checks.

Two kinds of request never reach the model:
- one whose client has gone: the route's awaiting task is cancelled (see `shared.request_lifetime`), which
  cancels its future, and the batcher drops it before its call is formed;
- one past its deadline: a request still queued at its deadline is answered at once with `DeadlineExceeded`
  (504) and never run; a request whose call has started runs to the end.
Both are counted in `fabula_requests_dropped_total{reason}`; queue waits go to `fabula_queue_wait_seconds` and
call sizes to `fabula_batch_size`.

When a call fails: an exception in one item's place fails that request alone; a call that raises one of the
spec's `retry_alone_on` types is run again one request at a time (so one bad request, or a batch too big for
GPU memory, fails alone); any other exception fails every request of the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from shared.errors import DeadlineExceeded, FabulaError, ModelNotReady
from shared.metrics import ServiceMetrics
from shared.settings import Settings

logger = logging.getLogger(__name__)

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")
EngineT = TypeVar("EngineT")

# A model call: the items of one batch in, one result per item out, in order (an exception in an item's place
# fails that request alone). A plain function runs on the batcher's worker thread; a coroutine function is
# awaited on the event loop.
BatchRunner = Callable[[list[ItemT]], "Sequence[ResultT | BaseException] | Awaitable[Sequence[ResultT | BaseException]]"]
# The same, given the service's loaded engine first; what a `BatchSpec` names.
EngineBatchRunner = Callable[[EngineT, list[ItemT]], "Sequence[ResultT | BaseException] | Awaitable[Sequence[ResultT | BaseException]]"]

DROPPED_DISCONNECTED = "disconnected"
DROPPED_DEADLINE = "deadline"


@runtime_checkable
class Batcher(Protocol):
    """What the service frame owns for each service: started in the lifespan, stopped at shutdown.

    A `MicroBatcher` is one; so is an engine that batches continuously inside itself (the llm engines), which the
    frame starts as soon as it is loaded.
    """

    def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True)
class BatchSpec(Generic[EngineT, ItemT, ResultT]):
    """How a service's requests share model calls; the frame builds one `MicroBatcher` from it per app.

    `run_batch(engine, items)` makes one call with the loaded engine. `max_batch_size` (the most weight one call
    holds) and `batch_timeout_s` (how long the oldest request waits for company) default to FABULA_MAX_BATCH_SIZE
    and FABULA_BATCH_WINDOW_MS. A call that raises one of `retry_alone_on` is run again one request at a time.
    """

    run_batch: EngineBatchRunner[EngineT, ItemT, ResultT]
    max_batch_size: int | None = None
    batch_timeout_s: float | None = None
    retry_alone_on: tuple[type[BaseException], ...] = ()

    def build(self, engine: Callable[[], EngineT], *, name: str, metrics: ServiceMetrics, settings: Settings) -> MicroBatcher[ItemT, ResultT]:
        """The batcher of one app; each call asks `engine()` for the loaded engine (a 503 until it is)."""
        run_batch = self.run_batch
        runner: BatchRunner[ItemT, ResultT]
        if inspect.iscoroutinefunction(run_batch):
            async def run_async(items: list[ItemT]) -> Sequence[ResultT | BaseException]:
                return await run_batch(engine(), items)

            runner = run_async
        else:
            def run_sync(items: list[ItemT]) -> Sequence[ResultT | BaseException]:
                return run_batch(engine(), items)  # type: ignore[return-value]

            runner = run_sync
        timeout_s = self.batch_timeout_s if self.batch_timeout_s is not None else settings.batch_window_ms / 1000
        return MicroBatcher(
            runner, name=name, metrics=metrics, window_seconds=timeout_s,
            max_batch_weight=self.max_batch_size or settings.max_batch_size, retry_alone_on=self.retry_alone_on,
        )


@dataclass(frozen=True)
class Batched(Generic[ResultT]):
    """One request's result and what it cost: time queued, the call's time, and the call it shared."""

    result: ResultT
    queue_seconds: float
    inference_seconds: float
    batch_requests: int
    batch_weight: int


@dataclass(eq=False)
class _Entry(Generic[ItemT, ResultT]):
    item: ItemT
    key: Hashable
    weight: int
    deadline: float | None
    future: asyncio.Future[Batched[ResultT]]
    enqueued: float = field(default_factory=time.monotonic)
    started: bool = False


class MicroBatcher(Generic[ItemT, ResultT]):
    """Group, wait, cap, drop and expire; `run_batch` only ever sees items that share one key."""

    def __init__(
        self,
        run_batch: BatchRunner[ItemT, ResultT],
        *,
        name: str,
        metrics: ServiceMetrics,
        window_seconds: float,
        max_batch_weight: int,
        retry_alone_on: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.name = name
        self._run_batch = run_batch
        self._is_async = inspect.iscoroutinefunction(run_batch)
        self._metrics = metrics
        self._window_seconds = max(0.0, window_seconds)
        self._max_batch_weight = max(1, max_batch_weight)
        self._retry_alone_on = retry_alone_on
        self._groups: dict[Hashable, list[_Entry[ItemT, ResultT]]] = {}
        self._in_flight: list[_Entry[ItemT, ResultT]] = []
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None

    @property
    def queued(self) -> int:
        return sum(1 for group in self._groups.values() for entry in group if not entry.future.done())

    def start(self) -> None:
        """Start the worker on the running event loop (the server's)."""
        if self._worker is None:
            self._wakeup = asyncio.Event()
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.name}-model")
            self._worker = asyncio.get_running_loop().create_task(self._serve(), name=f"{self.name}-batcher")

    async def stop(self) -> None:
        """Stop the worker; requests still queued (or in the call being cut short) get a 503."""
        abandoned = [*self._in_flight, *(entry for group in self._groups.values() for entry in group)]
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
        for entry in abandoned:
            if not entry.future.done():
                entry.future.set_exception(ModelNotReady(f"The {self.name} service is shutting down; try again shortly."))
        self._groups.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def submit(self, item: ItemT, *, key: Hashable = None, weight: int = 1, deadline: float | None = None) -> Batched[ResultT]:
        """Queue `item` and wait for its result.

        `deadline` is a `time.monotonic()` instant by which the item's call must have started. Cancelling the
        caller drops the item if its call has not started, and discards its result if it has; never the call.
        """
        if self._worker is None or self._worker.done() or self._wakeup is None:
            raise ModelNotReady(f"The {self.name} service is not accepting work (it is starting or stopping).")
        future: asyncio.Future[Batched[ResultT]] = asyncio.get_running_loop().create_future()
        entry = _Entry(item=item, key=key, weight=max(1, weight), deadline=deadline, future=future)
        self._groups.setdefault(key, []).append(entry)
        self._wakeup.set()
        try:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            await asyncio.wait({future}, timeout=timeout)
            if not future.done() and not entry.started:
                self._expire(entry)
            return await future
        except asyncio.CancelledError:
            future.cancel()
            if self._wakeup is not None:
                self._wakeup.set()
            raise

    async def _serve(self) -> None:
        while True:
            batch = await self._next_batch()
            await self._run(batch)

    async def _next_batch(self) -> list[_Entry[ItemT, ResultT]]:
        """Wait until a group is full, or the oldest group's window has passed, and take it."""
        assert self._wakeup is not None
        while True:
            self._drop_finished()
            if not self._groups:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            for key, group in self._groups.items():
                if sum(entry.weight for entry in group) >= self._max_batch_weight:
                    return self._take(key)
            key, group = min(self._groups.items(), key=lambda item: item[1][0].enqueued)
            remaining = group[0].enqueued + self._window_seconds - time.monotonic()
            if remaining <= 0:
                batch = self._take(key)
                if batch:
                    return batch
                continue
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):  # the window closed: the loop takes the batch that waited longest
                await asyncio.wait_for(self._wakeup.wait(), remaining)

    def _drop_finished(self) -> None:
        """Forget entries that were answered while queued; a cancelled one is a client that left."""
        for key in list(self._groups):
            kept: list[_Entry[ItemT, ResultT]] = []
            for entry in self._groups[key]:
                if not entry.future.done():
                    kept.append(entry)
                elif entry.future.cancelled():
                    self._metrics.observe_dropped(DROPPED_DISCONNECTED)
            if kept:
                self._groups[key] = kept
            else:
                del self._groups[key]

    def _take(self, key: Hashable) -> list[_Entry[ItemT, ResultT]]:
        """The oldest live entries of the group that fit in one call (at least one, whatever its weight)."""
        now = time.monotonic()
        for entry in self._groups[key]:
            if entry.deadline is not None and entry.deadline <= now:
                self._expire(entry)
        self._drop_finished()
        group = self._groups.get(key, [])
        taken: list[_Entry[ItemT, ResultT]] = []
        weight = 0
        for entry in group:
            if taken and weight + entry.weight > self._max_batch_weight:
                break
            taken.append(entry)
            weight += entry.weight
        rest = group[len(taken):]
        if rest:
            self._groups[key] = rest
        else:
            self._groups.pop(key, None)
        return taken

    def _expire(self, entry: _Entry[ItemT, ResultT]) -> None:
        if entry.future.done() or entry.started:
            return
        group = self._groups.get(entry.key, [])
        if entry in group:
            group.remove(entry)
        waited = time.monotonic() - entry.enqueued
        entry.future.set_exception(DeadlineExceeded(
            f"The request waited {waited:.1f} s for the {self.name} model and reached its deadline before its turn, "
            "so it was not run (the deadline is X-Request-Timeout, else FABULA_SERVICE_TIMEOUT_S). "
            "Try again when the service is less busy, or allow more time.",
        ))
        self._metrics.observe_dropped(DROPPED_DEADLINE)

    async def _run(self, batch: list[_Entry[ItemT, ResultT]]) -> None:
        try:
            await self._run_once(batch)
        except Exception as exc:  # noqa: BLE001 - handed to the waiting requests, whose handlers report it
            if isinstance(exc, self._retry_alone_on) and len(batch) > 1:
                logger.warning(f"{self.name} batch failed; running its requests one by one",
                               extra={"fields": {"batch_size": len(batch), "error": repr(exc)}})
                for entry in batch:
                    if not entry.future.done():
                        await self._run([entry])
                return
            if not isinstance(exc, FabulaError):
                logger.exception(f"{self.name} batch failed", extra={"fields": {"batch_size": len(batch)}})
            for entry in batch:
                if not entry.future.done():
                    entry.future.set_exception(exc)

    async def _run_once(self, batch: list[_Entry[ItemT, ResultT]]) -> None:
        started = time.monotonic()
        waits = [started - entry.enqueued for entry in batch]
        for entry in batch:
            entry.started = True
        self._metrics.observe_batch(len(batch), waits)
        self._in_flight = batch
        items = [entry.item for entry in batch]
        try:
            results: Any
            if self._is_async:
                results = await self._run_batch(items)  # type: ignore[misc]
            else:
                results = await asyncio.get_running_loop().run_in_executor(self._executor, self._run_batch, items)
        finally:
            self._in_flight = []
        inference_seconds = time.monotonic() - started
        weight = sum(entry.weight for entry in batch)
        for entry, waited, result in zip(batch, waits, results, strict=True):
            if entry.future.done():
                continue
            if isinstance(result, BaseException):
                entry.future.set_exception(result)
            else:
                entry.future.set_result(Batched(result, waited, inference_seconds, len(batch), weight))
