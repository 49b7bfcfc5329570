"""A per-client limit on how many changes (POSTs, new books) one client may ask for per minute."""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable

from shared.errors import RateLimited


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
    """The same sliding window, kept in Redis so the limit holds across every web replica."""

    def __init__(self, url: str, per_minute: int, *, window_s: float = 60.0) -> None:
        import redis

        self.per_minute = per_minute
        self.window_s = window_s
        self._client = redis.Redis.from_url(url)

    def check(self, key: str) -> None:
        """Count first, then look (one MULTI), so two replicas cannot both take the last place in the window."""
        if self.per_minute <= 0:
            return
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
