"""Running a work order while holding its book's lease, so no two workers (or web replicas) make one book at once.

The lease is taken in the job store, renewed every third of its length while the work runs, and released at
the end; when it is lost (the job was deleted, or it ran out and another worker took the book) the work stops.
Whatever the order was (a whole book or an edit), the pipeline's `run` does it; this module only decides
whether it may run now.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from shared.logs import job_id_var
from webapp.jobs.models import JobStatus
from webapp.jobs.orders import Outcome, WorkOrder
from webapp.jobs.store import JobStore

logger = logging.getLogger(__name__)


class LeasedDispatch:
    def __init__(self, store: JobStore, run: Callable[[WorkOrder], Awaitable[None]], *, lease_s: float) -> None:
        self.store = store
        self.run = run
        self.lease_s = lease_s

    async def perform(self, order: WorkOrder, *, owner: str) -> Outcome:
        """Run `order` while holding the job's lease.

        `skipped`: the job is gone, or already finished (a redelivered order). `held`: another worker holds it now;
        try again after its lease (`lease_s`) would have run out.
        """
        token = job_id_var.set(order.job_id)
        try:
            record = self.store.get(order.job_id)
            if record is None or record.status not in (JobStatus.queued, JobStatus.running):
                return Outcome.skipped
            if not self.store.acquire_lease(order.job_id, owner, self.lease_s):
                logger.info("book held by another worker; trying again later")
                return Outcome.held
            return await self._holding_lease(order, owner)
        finally:
            job_id_var.reset(token)

    async def _holding_lease(self, order: WorkOrder, owner: str) -> Outcome:
        work = asyncio.ensure_future(self.run(order))
        lost = asyncio.Event()
        renewing = asyncio.ensure_future(self._keep_lease(order.job_id, owner, work, lost))
        try:
            await work
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if lost.is_set() and not (current and current.cancelling()):
                logger.warning("the book's lease was lost (the job is gone, or another worker holds it); stopped")
                return Outcome.skipped
            raise
        finally:
            work.cancel()
            renewing.cancel()
            self.store.release_lease(order.job_id, owner)
        return Outcome.done

    async def _keep_lease(self, job_id: str, owner: str, work: asyncio.Future[None], lost: asyncio.Event) -> None:
        """Renew the lease every third of it; stop the work when it is gone. A database blip is tolerated while the
        lease still runs."""
        renewed = time.monotonic()
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                held = await asyncio.to_thread(self.store.renew_lease, job_id, owner, self.lease_s)
            except Exception:  # noqa: BLE001 - a database blip: try again while the lease still runs
                logger.warning("could not renew the book's lease", exc_info=True)
                held = time.monotonic() - renewed < self.lease_s * 2 / 3
            else:
                renewed = time.monotonic() if held else renewed
            if not held:
                lost.set()
                work.cancel()
                return
