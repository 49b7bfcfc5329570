"""`fabula worker`: a Celery worker that makes books from the broker's `books` queue.

Its tasks run on one asyncio event loop in a background thread, sharing one Workshop (service clients, the job
store), so a worker with `--concurrency N` makes N books at once on the same connections. A book another worker
holds (its lease is still running) is tried again later, never made twice at once; a worker killed mid-book
leaves its task unacknowledged, and the broker gives it to another worker after its visibility timeout, which
redoes only the steps that were not saved. A worker outlives its servers: it waits for a job database that is not
up yet, tries an order again when the database goes away mid-book, and reconnects to a restarted broker
(`broker_transport`); an order lost with the broker is sent again by the sweeper (`jobs/sweeper.py`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING

from celery import Task
from prometheus_client import CollectorRegistry, Counter

from shared.settings import Settings
from webapp.jobs.celery_app import BOOKS_QUEUE, RUN_ORDER, celery_app
from webapp.jobs.database import DATABASE_OUTAGES
from webapp.jobs.orders import Outcome, WorkOrder
from webapp.health import dependency_health
from webapp.jobs.schedulers import process_owner
from webapp.worker_health import HealthServer

if TYPE_CHECKING:
    from webapp.workshop import Workshop

logger = logging.getLogger(__name__)
DATABASE_RETRY_S = 5.0


class WorkerRuntime:
    """The event loop thread and the Workshop every task of this worker shares."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        from webapp.workshop import build_workshop

        self.owner = process_owner("worker")
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="worker-loop", daemon=True)
        self.thread.start()
        public_url = settings.public_url or f"http://{settings.web_host}:{settings.web_port}"

        async def build() -> Workshop:
            return build_workshop(settings, public_url=public_url)

        while True:
            try:
                self.workshop = asyncio.run_coroutine_threadsafe(build(), self.loop).result()
                break
            except DATABASE_OUTAGES as exc:  # the database is not up yet (or restarting): wait for it
                logger.warning("waiting for the job database", extra={"fields": {"error": str(exc)[:300]}})
                time.sleep(DATABASE_RETRY_S)

    def dependencies_down(self) -> list[str]:
        """What this worker cannot reach now: `database`, `broker`."""
        return dependency_health(self.settings)

    def perform(self, order: WorkOrder) -> Outcome:
        future: Future[Outcome] = asyncio.run_coroutine_threadsafe(self.workshop.dispatch.perform(order, owner=self.owner), self.loop)
        return future.result()

    def fail(self, job_id: str, message: str) -> None:
        from webapp.jobs.models import JobStatus

        store = self.workshop.store
        try:
            if store.get(job_id) is not None:
                store.update(job_id, status=JobStatus.failed, error=message, error_type="internal_error")
        except Exception:  # noqa: BLE001 - the database itself is down: the lease runs out and the task comes back
            logger.exception("could not record the failure")

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.workshop.aclose(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)


def run_worker(settings: Settings, *, concurrency: int = 2) -> int:
    app = celery_app(settings)
    runtime = WorkerRuntime(settings)
    registry = CollectorRegistry()
    orders = Counter("fabula_worker_orders", "Work orders this worker took, by outcome.", ["kind", "outcome"], registry=registry)

    @app.task(name=RUN_ORDER, bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)
    def run_order(task: Task, data: dict[str, object]) -> str:
        order = WorkOrder.model_validate(data)
        try:
            outcome = runtime.perform(order)
        except DATABASE_OUTAGES as exc:  # the book is fine: its database is away for now
            logger.warning("the job database cannot be reached; the order is tried again soon", extra={"fields": {"job_id": order.job_id}})
            orders.labels(order.kind, "retried").inc()
            raise task.retry(countdown=DATABASE_RETRY_S, exc=exc) from exc
        except Exception as exc:  # noqa: BLE001 - an acknowledged task must not leave its book running for good
            logger.exception("a work order failed outside the book's own error handling")
            runtime.fail(order.job_id, f"The book stopped unexpectedly ({type(exc).__name__}); its finished steps are kept and it can be resumed.")
            orders.labels(order.kind, "failed").inc()
            return "failed"
        orders.labels(order.kind, outcome.value).inc()
        if outcome == Outcome.held:
            raise task.retry(countdown=max(1.0, settings.job_lease_s / 3))
        return outcome.value

    health = HealthServer("0.0.0.0", settings.worker_health_port, owner=runtime.owner, registry=registry, down=runtime.dependencies_down).start()
    health_url = f"http://127.0.0.1:{health.port}/healthz"
    logger.info("worker ready", extra={"fields": {"owner": runtime.owner, "concurrency": concurrency, "health": health_url}})
    print(f"Fabula worker {runtime.owner} takes books from {BOOKS_QUEUE} ({concurrency} at once); health: {health_url}", flush=True)
    try:
        worker = app.Worker(
            pool="threads", concurrency=concurrency, queues=[BOOKS_QUEUE], loglevel="WARNING", without_mingle=True, without_gossip=True, quiet=True
        )
        worker.start()
    finally:
        health.stop()
        runtime.close()
    return 0
