"""Job progress across processes: events published on Redis, so any web replica follows a book any worker makes.

Each event goes to the channel `fabula:events:<job id>` and is kept as that job's last event (a key with a day's
expiry), so a stream that starts late still begins with where the book is. One listener task per process
receives every channel and hands events to the local subscribers' queues.
"""

from __future__ import annotations

import asyncio
import logging
import redis
import redis.asyncio as aioredis

from webapp.jobs.events import Subscribers
from webapp.jobs.models import JobEvent

logger = logging.getLogger(__name__)

CHANNEL = "fabula:events:"
LAST = "fabula:last-event:"
LAST_TTL_S = 24 * 3600


class RedisEventBus:
    def __init__(self, url: str) -> None:
        self.url = url
        self._client = redis.Redis.from_url(url)
        self._subscribers = Subscribers()
        self._listener: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def publish(self, event: JobEvent) -> None:
        """Best effort: the job store is the record of a book; a broker blip must not fail the book."""
        data = event.model_dump_json()
        try:
            pipe = self._client.pipeline()
            pipe.set(LAST + event.job_id, data, ex=LAST_TTL_S)
            pipe.publish(CHANNEL + event.job_id, data)
            pipe.execute()
        except redis.RedisError:
            logger.warning("could not publish a progress event; followers read the job instead", exc_info=True)

    def last(self, job_id: str) -> JobEvent | None:
        try:
            data = self._client.get(LAST + job_id)
        except redis.RedisError:
            return None
        return JobEvent.model_validate_json(data) if data else None

    def subscribe(self, job_id: str) -> asyncio.Queue[JobEvent]:
        queue = self._subscribers.add(job_id)
        if self._listener is None or self._listener.done():
            self._loop = asyncio.get_running_loop()
            self._listener = self._loop.create_task(self._listen(), name="redis-events")
        return queue

    def unsubscribe(self, job_id: str, queue: asyncio.Queue[JobEvent]) -> None:
        self._subscribers.remove(job_id, queue)

    def forget(self, job_id: str) -> None:
        try:
            self._client.delete(LAST + job_id)
        except redis.RedisError:
            logger.warning("could not forget a job's last event", exc_info=True)

    async def _listen(self) -> None:
        while True:
            client = aioredis.Redis.from_url(self.url)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.psubscribe(CHANNEL + "*")
                    async for message in pubsub.listen():
                        if message.get("type") != "pmessage":
                            continue
                        self._subscribers.deliver(JobEvent.model_validate_json(message["data"]))
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the broker went away: followers fall back to reading the job, and we reconnect
                logger.warning("lost the events connection to Redis; reconnecting", exc_info=True)
                await asyncio.sleep(1.0)
            finally:
                await client.aclose()

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        self._client.close()
