"""In-process publish/subscribe of job progress, for server-sent events, the UI and the CLI."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from webapp.jobs.models import JobEvent


class EventBus:
    def __init__(self) -> None:
        self._subscribers: dict[str, set[asyncio.Queue[JobEvent]]] = defaultdict(set)
        self._last: dict[str, JobEvent] = {}

    def publish(self, event: JobEvent) -> None:
        self._last[event.job_id] = event
        for queue in list(self._subscribers.get(event.job_id, ())):
            queue.put_nowait(event)

    def last(self, job_id: str) -> JobEvent | None:
        return self._last.get(job_id)

    def subscribe(self, job_id: str) -> asyncio.Queue[JobEvent]:
        queue: asyncio.Queue[JobEvent] = asyncio.Queue()
        self._subscribers[job_id].add(queue)
        return queue

    def unsubscribe(self, job_id: str, queue: asyncio.Queue[JobEvent]) -> None:
        self._subscribers.get(job_id, set()).discard(queue)
        if not self._subscribers.get(job_id):
            self._subscribers.pop(job_id, None)

    def forget(self, job_id: str) -> None:
        self._last.pop(job_id, None)
