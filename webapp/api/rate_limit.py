"""A per-client limit on how many changes (POSTs, new books) one client may ask for per minute."""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable

from shared.errors import RateLimited

logger = logging.getLogger(__name__)


class RateLimiter:
    """Sliding one-minute window per client key; `per_minute <= 0` turns the limit off."""

    def __init__(self, per_minute: int, *, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.window_s = window_s
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> None:
        """Count one request for `key`, or raise `RateLimited` with the seconds until the next one is allowed."""
        if self.per_minute <= 0:
            return
        now = self.clock()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window_s:
                hits.popleft()
            if len(hits) >= self.per_minute:
                retry_after = max(1, math.ceil(hits[0] + self.window_s - now))
                raise RateLimited(
                    f"Too many requests: one client may make {self.per_minute} changes per minute "
                    f"(FABULA_RATE_LIMIT_PER_MINUTE). Try again in {retry_after} s.",
                    retry_after=retry_after,
                )
            hits.append(now)
            if len(self._hits) > 10_000:
                self._forget_idle(now)

    def _forget_idle(self, now: float) -> None:
        for key in [key for key, hits in self._hits.items() if not hits or hits[-1] <= now - self.window_s]:
            del self._hits[key]


class RedisRateLimiter:
    """The same sliding window, kept in Redis so the limit holds across every web replica.

    While Redis cannot be reached, each replica counts in its own memory instead: the limit still holds (per
    replica) and reads and changes that need no Redis are still served; failing open would drop the limit just
    when the system is weakest, and failing closed would turn a Redis restart into an outage of every route.
    """

    def __init__(self, url: str, per_minute: int, *, window_s: float = 60.0) -> None:
        import redis

        self.per_minute = per_minute
        self.window_s = window_s
        # Short timeouts: a Redis that does not answer must not hold a request for the client's whole timeout.
        self._client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        self._redis_error = redis.RedisError
        self._fallback = RateLimiter(per_minute, window_s=window_s)

    def check(self, key: str) -> None:
        """Count in Redis, or in this process while Redis is down."""
        if self.per_minute <= 0:
            return
        try:
            self._check_in_redis(key)
        except self._redis_error as exc:
            logger.warning("rate limit counted in this process: Redis does not answer", extra={"fields": {"error": repr(exc)[:200]}})
            self._fallback.check(key)

    def _check_in_redis(self, key: str) -> None:
        """Count first, then look (one MULTI), so two replicas cannot both take the last place in the window."""
        name = "fabula:rate:" + key
        now = time.time()
        member = f"{now}:{secrets.token_hex(4)}"
        pipe = self._client.pipeline(transaction=True)
        pipe.zremrangebyscore(name, 0, now - self.window_s)
        pipe.zadd(name, {member: now})
        pipe.expire(name, int(self.window_s) + 1)
        pipe.zcard(name)
        pipe.zrange(name, 0, 0, withscores=True)
        *_, count, oldest = pipe.execute()
        if count > self.per_minute:
            self._client.zrem(name, member)
            retry_after = max(1, math.ceil(oldest[0][1] + self.window_s - now)) if oldest else 1
            raise RateLimited(
                f"Too many requests: one client may make {self.per_minute} changes per minute "
                f"(FABULA_RATE_LIMIT_PER_MINUTE). Try again in {retry_after} s.",
                retry_after=retry_after,
            )
