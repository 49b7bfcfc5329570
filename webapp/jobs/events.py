"""Publish/subscribe of job progress, for server-sent events, the UI and the CLI.

`EventBus` is what every follower and publisher relies on; `LocalEventBus` keeps events inside this process (one
machine) and `RedisEventBus` (webapp/jobs/redis_events.py) carries them between processes. Both hand events to
their local followers through one `Subscribers` table.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Protocol

from webapp.jobs.models import JobEvent


class EventBus(Protocol):
    def publish(self, event: JobEvent) -> None: ...
    def last(self, job_id: str) -> JobEvent | None: ...
    def subscribe(self, job_id: str) -> asyncio.Queue[JobEvent]: ...
    def unsubscribe(self, job_id: str, queue: asyncio.Queue[JobEvent]) -> None: ...
    def forget(self, job_id: str) -> None: ...
    async def aclose(self) -> None: ...


class Subscribers:
    """This process's followers of each job: a queue per follower."""

    def __init__(self) -> None:
        self._queues: dict[str, set[asyncio.Queue[JobEvent]]] = defaultdict(set)

    def add(self, job_id: str) -> asyncio.Queue[JobEvent]:
        queue: asyncio.Queue[JobEvent] = asyncio.Queue()
        self._queues[job_id].add(queue)
        return queue

    def remove(self, job_id: str, queue: asyncio.Queue[JobEvent]) -> None:
        self._queues.get(job_id, set()).discard(queue)
        if not self._queues.get(job_id):
            self._queues.pop(job_id, None)

    def deliver(self, event: JobEvent) -> None:
        for queue in list(self._queues.get(event.job_id, ())):
            queue.put_nowait(event)


class LocalEventBus:
    """Events inside this process: the default on one machine."""

    def __init__(self) -> None:
        self._subscribers = Subscribers()
        self._last: dict[str, JobEvent] = {}

    def publish(self, event: JobEvent) -> None:
        self._last[event.job_id] = event
        self._subscribers.deliver(event)

    def last(self, job_id: str) -> JobEvent | None:
        return self._last.get(job_id)

    def subscribe(self, job_id: str) -> asyncio.Queue[JobEvent]:
        return self._subscribers.add(job_id)

    def unsubscribe(self, job_id: str, queue: asyncio.Queue[JobEvent]) -> None:
        self._subscribers.remove(job_id, queue)

    def forget(self, job_id: str) -> None:
        self._last.pop(job_id, None)

    async def aclose(self) -> None:
        return None
