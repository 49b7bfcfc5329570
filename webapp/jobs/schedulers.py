"""Who runs the work orders: tasks in this process (one machine, the default), or Celery workers over a broker.

A scheduler only schedules: `LeasedDispatch.perform` runs an order under its book's lease (one worker per book) and
the pipeline does the work; every order may run twice safely.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from typing import TYPE_CHECKING, Protocol

from webapp.jobs.database import DATABASE_OUTAGES
from webapp.jobs.orders import Outcome, WorkOrder

if TYPE_CHECKING:
    from celery import Celery

    from webapp.jobs.dispatch import LeasedDispatch

logger = logging.getLogger(__name__)


def process_owner(kind: str) -> str:
    """A lease holder's name: unique per process, readable in the database."""
    return f"{kind}-{os.uname().nodename}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Scheduler(Protocol):
    local: bool

    def schedule(self, order: WorkOrder) -> None: ...
    async def wait(self, job_id: str) -> None: ...
    async def cancel(self, job_id: str) -> None: ...
    async def shutdown(self) -> None: ...


class InProcessScheduler:
    """Orders run as tasks on this process's event loop, at most `max_running` books at once."""

    local = True

    def __init__(self, dispatch: LeasedDispatch, *, max_running: int = 2) -> None:
        self.dispatch = dispatch
        self.owner = process_owner("web")
        self._tasks: dict[str, asyncio.Task] = {}
        self._running = asyncio.Semaphore(max_running)

    def schedule(self, order: WorkOrder) -> None:
        async def guarded() -> None:
            while True:
                async with self._running:
                    try:
                        if await self.dispatch.perform(order, owner=self.owner) != Outcome.held:
                            return
                    except DATABASE_OUTAGES:
                        logger.warning("the job database cannot be reached; the book is tried again soon", exc_info=True)
                await asyncio.sleep(self.dispatch.lease_s / 3)  # held elsewhere, or the database away: wait without a slot

        task = asyncio.get_running_loop().create_task(guarded(), name=f"job-{order.job_id}")
        self._tasks[order.job_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(order.job_id, None) if self._tasks.get(order.job_id) is task else None)

    async def wait(self, job_id: str) -> None:
        task = self._tasks.get(job_id)
        if task is not None:
            await asyncio.shield(task)

    async def cancel(self, job_id: str) -> None:
        task = self._tasks.pop(job_id, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def shutdown(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class CeleryScheduler:
    """Orders go to the `books` queue of the broker; `fabula worker`s run them (at least once)."""

    local = False

    def __init__(self, app: Celery) -> None:
        self.app = app

    def schedule(self, order: WorkOrder) -> None:
        from webapp.jobs.celery_app import RUN_ORDER, BOOKS_QUEUE

        self.app.send_task(RUN_ORDER, args=[order.model_dump(mode="json")], queue=BOOKS_QUEUE)

    async def wait(self, job_id: str) -> None:
        return None  # the book is made elsewhere; `Stories.wait` follows the job's status

    async def cancel(self, job_id: str) -> None:
        return None  # the worker's lease renewal finds the job gone and stops its work

    async def shutdown(self) -> None:
        return None
