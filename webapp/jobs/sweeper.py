"""The sweeper: nothing stays queued or running for good.

With workers, a book's order lives in the broker. It can be lost: Redis restarted without persistence, or a worker
died and the broker's copy went with a restart. Every web replica and worker runs a sweeper; each round it finds
the books that are queued or running, held by no worker, and quiet for a lease period (`JobStore.stalled`), and
sends the order of each one again when the broker holds none for it (a running book whose worker's lease ran out
is sent again in any case). `JobStore.claim_sweep` lets one process win each book at most once per lease period,
and every order is safe to run twice (the lease, and each step's saved result).
"""

from __future__ import annotations

import asyncio
import logging

from webapp.jobs.broker_orders import BrokerOrders
from webapp.jobs.models import JobStatus
from webapp.jobs.orders import WorkOrder
from webapp.jobs.schedulers import Scheduler
from webapp.jobs.store import JobStore

logger = logging.getLogger(__name__)


class Sweeper:
    def __init__(self, store: JobStore, scheduler: Scheduler, broker: BrokerOrders, *, period_s: float) -> None:
        self.store = store
        self.scheduler = scheduler
        self.broker = broker
        self.period_s = period_s
        self._task: asyncio.Task[None] | None = None

    def sweep(self) -> list[str]:
        """One round; the ids of the books whose order was sent again."""
        stalled = self.store.stalled(self.period_s)
        if not stalled:
            return []
        held = self.broker.held([record.id for record in stalled])
        if held is None:
            return []
        resent = []
        for record in stalled:
            waiting = record.status == JobStatus.queued and record.id in held
            if waiting or not self.store.claim_sweep(record.id, self.period_s):
                continue
            saved = self.store.progress(record.id).order
            order = WorkOrder.model_validate(saved) if saved else WorkOrder(job_id=record.id)
            logger.warning("a book's order was lost; sending it again", extra={"fields": {"job_id": record.id, "status": record.status.value}})
            self.scheduler.schedule(order)
            resent.append(record.id)
        return resent

    def start(self) -> None:
        """Sweep every third of a lease period in the background of this event loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sweeper")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.period_s / 3)
            try:
                await asyncio.to_thread(self.sweep)
            except Exception:  # noqa: BLE001 - the database or the broker is away: try again next round
                logger.warning("the sweep could not run; trying again", exc_info=True)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.to_thread(self.broker.close)
