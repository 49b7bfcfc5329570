"""The Redis broker transport, with one fault of kombu 5.7 closed: a worker whose broker restarts keeps going.

When the connection to Redis drops while an order is being made, kombu closes the consumer's connection and then
touches the closed channel (to put back its unacknowledged messages, or to acknowledge the finished order). The
closed connection has no client any more, and kombu's Redis channel reads the host from it: an `AttributeError`
that Celery does not expect, which stops the worker for good ("Unrecoverable error"). Here that moment raises the
connection error it is, which kombu and Celery already handle: the consumer reconnects, and the message comes back
from the broker after its visibility timeout (the job's lease makes running it twice safe).
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

TRANSPORT = f"{__name__}:Transport"


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> Any:
        if self.connection.client is None:
            raise RedisConnectionError("the connection to the broker was closed")
        return super()._connparams(asynchronous=asynchronous)


class Transport(kombu_redis.Transport):
    Channel = Channel
