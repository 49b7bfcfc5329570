"""Which books the broker holds an order for: waiting in the `books` queue, or delivered to a worker and not yet
acknowledged. A queued book with none lost its order (Redis restarted without persistence) and is sent again by
the sweeper; a book with one is just waiting its turn.

Read straight from kombu's Redis layout: the queue is a list named after it, delivered messages are kept in the
`unacked` hash until acknowledged. Each entry is a small JSON document whose task arguments name the book.
"""

from __future__ import annotations

import base64
import json
import logging

import redis

from webapp.jobs.celery_app import BOOKS_QUEUE

logger = logging.getLogger(__name__)
UNACKED = "unacked"


class BrokerOrders:
    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)

    def held(self, job_ids: list[str]) -> set[str] | None:
        """The ones among `job_ids` with an order in the broker; None when the broker cannot be read (then nothing
        is known to be lost)."""
        try:
            entries = [*self._client.lrange(BOOKS_QUEUE, 0, -1), *self._client.hvals(UNACKED)]
        except redis.RedisError:
            logger.warning("could not read the book queue; nothing is swept this time", exc_info=True)
            return None
        texts = [_readable(entry) for entry in entries]
        return {job_id for job_id in job_ids if any(job_id in text for text in texts)}

    def close(self) -> None:
        self._client.close()


def _readable(entry: bytes | str) -> str:
    """The entry with its base64 body decoded (the task's arguments are in it)."""
    text = entry.decode("utf-8", "replace") if isinstance(entry, bytes) else entry
    try:
        document = json.loads(text)
        message = document[0] if isinstance(document, list) else document
        body = base64.b64decode(message.get("body", "")).decode("utf-8", "replace")
    except (ValueError, TypeError, AttributeError, IndexError):
        return text
    return text + body
